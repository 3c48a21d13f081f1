"""corelib.tasks: the Appendix B protocols, and heads that learn a real signal (a held-out set scored
above chance), with the encoder frozen or fine-tuned as the protocol says."""
from __future__ import annotations

import numpy as np
import torch

from corelib import metrics
from corelib.data import tokenize
from corelib.models import build_model
from corelib.tasks import PROTOCOLS, Protocol, predict, train_head


def _motif_task(n=160, seed=0):
    """Label 1 when the sequence holds GGGG, else 0: learnable from the residues."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        s = "".join(rng.choice(list("ACU"), size=30))
        if i % 2:
            pos = rng.integers(0, 26)
            s = s[:pos] + "GGGG" + s[pos + 4:]
        seqs.append(s)
        labels.append(i % 2)
    return tokenize(seqs, "rna", 64), np.array(labels)


def test_protocols_follow_appendix_b():
    assert PROTOCOLS["typecls"] == Protocol("sequence", "linear", True, "ce", 30, 1e-4, 32, 0.01)
    assert PROTOCOLS["modif"].lr == 5e-5 and not PROTOCOLS["rbp"].finetune_encoder
    assert PROTOCOLS["localization"].head == PROTOCOLS["ss_protein"].head == "mlp2"
    assert all(p.epochs == 50 and not p.finetune_encoder for k, p in PROTOCOLS.items()
               if k in ("localization", "ss_protein", "affinity"))


def test_sequence_head_with_fine_tuning_learns_a_motif_and_leaves_the_encoder_untouched():
    tokens, y = _motif_task()
    encoder = build_model("rna", "tiny", seed=0)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    protocol = Protocol("sequence", "linear", True, "ce", 15, 3e-3)
    model = train_head(encoder, protocol, tokens[:120], y[:120], outputs=2, seed=0)
    acc = metrics.classification(y[120:], predict(model, tokens[120:]).argmax(1))["ACC"]
    assert acc >= 80
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_frozen_encoder_keeps_its_weights_while_the_head_trains():
    tokens, y = _motif_task(n=64)
    encoder = build_model("rna", "tiny", seed=1)
    untrained = train_head(encoder, Protocol("sequence", "mlp2", False, "ce", 0, 1e-3), tokens, y, outputs=2)
    trained = train_head(encoder, Protocol("sequence", "mlp2", False, "ce", 2, 1e-3), tokens, y, outputs=2)
    assert all(torch.equal(a, b) for a, b in zip(encoder.parameters(), trained.encoder.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(untrained.head.parameters(), trained.head.parameters()))


def test_residue_head_predicts_one_row_per_residue():
    tokens, _ = _motif_task(n=8)
    per_residue = [np.array([int(t == 6) for t in tok[1:-1]]) for tok in tokens]   # 6 = 'G' in RNA-FM's vocabulary
    model = train_head(build_model("rna", "tiny"), Protocol("residue", "mlp2", True, "ce", 1, 1e-3), tokens,
                       per_residue, outputs=2)
    assert predict(model, tokens).shape == (sum(len(t) - 2 for t in tokens), 2)
