"""corelib.tasks: the Appendix B protocols, and heads that learn a real signal (a held-out set scored
above chance), with the encoder frozen or fine-tuned as the protocol says."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corelib.data import tokenize
from corelib.data.tokens import pad_batch
from corelib.evaluation import metrics
from corelib.evaluation.heads import PROTOCOLS, DownstreamModel, Head, Protocol, predict, residue_states, train_head
from corelib.models import build_model


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
    assert PROTOCOLS["ss_rna"] == Protocol("pair", "pair", False, "bce", 10, 1e-5, 32, 0.01)
    assert PROTOCOLS["ss_protein"].scaled(5, 1e-3) == Protocol("residue", "mlp2", False, "ce", 5, 1e-3, 32, 0.01)
    assert PROTOCOLS["modif"].lr == 5e-5 and not PROTOCOLS["rbp"].finetune_encoder
    assert PROTOCOLS["localization"].head == PROTOCOLS["ss_protein"].head == "mlp2"
    assert all(p.epochs == 50 and not p.finetune_encoder for k, p in PROTOCOLS.items()
               if k in ("localization", "ss_protein", "affinity"))


def test_fine_tuned_axis_trains_the_encoder_as_appendix_b1_does():
    from corelib.evaluation.heads import FINETUNE_LR, finetuned

    assert finetuned(PROTOCOLS["typecls"]) == PROTOCOLS["typecls"]               # B.1 fine-tunes it already
    assert finetuned(PROTOCOLS["modif"]).lr == 5e-5                              # B.1's own lr kept
    loc = finetuned(PROTOCOLS["localization"])                                   # B.2 freezes: B.1's fine-tune
    assert loc == Protocol("sequence", "mlp2", True, "ce", 50, FINETUNE_LR, 32, 0.01) and FINETUNE_LR == 1e-4
    assert loc.scaled(3, 3e-3, 8) == Protocol("sequence", "mlp2", True, "ce", 3, 3e-3, 8, 0.01)


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


def test_residue_head_learns_which_residues_are_g():
    tokens, _ = _motif_task(n=48)
    per_residue = [np.array([int(t == 6) for t in tok[1:-1]]) for tok in tokens]   # 6 = 'G' in RNA-FM's vocabulary
    model = train_head(build_model("rna", "tiny"), Protocol("residue", "mlp2", False, "ce", 30, 3e-3), tokens[:32],
                       per_residue[:32], outputs=2)
    out = predict(model, tokens[32:])
    assert [o.shape for o in out] == [(len(t) - 2, 2) for t in tokens[32:]]
    assert metrics.classification(np.concatenate(per_residue[32:]), np.concatenate(out).argmax(1))["ACC"] > 95


def test_pair_head_scores_are_symmetric():
    head = Head(16, 1, PROTOCOLS["ss_rna"])
    out = head(torch.randn(3, 11, 16), torch.ones(3, 11, dtype=torch.bool))
    assert out.shape == (3, 11, 11) and torch.allclose(out, out.transpose(1, 2))


def test_frozen_encoder_head_on_cached_states_equals_running_the_encoder_every_step():
    tokens, y = _motif_task(n=40)
    encoder = build_model("rna", "tiny", seed=3)
    protocol = Protocol("sequence", "mlp2", False, "ce", 3, 1e-3, batch_size=8)
    cached = train_head(encoder, protocol, tokens, y, outputs=2, seed=5)
    # the same training written out directly: encoder (eval mode, no grad) on every batch
    torch.manual_seed(5)
    ref = DownstreamModel(encoder, 2, protocol)
    opt = torch.optim.AdamW(ref.head.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay)
    rng = np.random.default_rng(5)
    encoder.eval()
    for _ in range(protocol.epochs):
        order = rng.permutation(len(tokens))
        for start in range(0, len(order), protocol.batch_size):
            batch = order[start : start + protocol.batch_size]
            x = torch.from_numpy(pad_batch([tokens[i].astype(np.int64) for i in batch], encoder.vocab.pad))
            with torch.no_grad():
                states, mask = residue_states(encoder, x)
            loss = torch.nn.functional.cross_entropy(ref.head(states, mask), torch.as_tensor(y[batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(cached.head.parameters(), ref.head.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_pair_weight_by_hand():
    from corelib.evaluation.heads import pair_weight

    a = np.full((4, 4), -1.0); a[0, 3] = a[3, 0] = 1; a[0, 2] = a[2, 0] = 0; a[1, 3] = a[3, 1] = 0
    assert pair_weight([a]) == pytest.approx(np.sqrt(4 / 2))


def test_pair_head_learns_hairpin_stems_from_residue_identity():
    """Hairpins G^k A^4 C^k at random offsets: the pairs (i, j) of the stem are learnable only from the
    residues and their neighbours, which the pair head's convolutions see."""
    rng = np.random.default_rng(0)
    tokens, labels = [], []
    for _ in range(48):
        k, left = int(rng.integers(4, 7)), int(rng.integers(0, 6))
        seq = "".join(rng.choice(list("AU"), left)) + "G" * k + "AAAA" + "C" * k + "".join(rng.choice(list("AU"), 4))
        n = len(seq)
        m = np.zeros((n, n), dtype=np.float32)
        for t in range(k):
            i, j = left + t, left + 2 * k + 3 - t
            m[i, j] = m[j, i] = 1
        m[np.abs(np.subtract.outer(range(n), range(n))) < 4] = -1
        tokens += tokenize([seq], "rna", 64)
        labels.append(m)
    model = train_head(build_model("rna", "tiny", seed=0), Protocol("pair", "pair", False, "bce", 40, 3e-3, 8),
                       tokens[:32], labels[:32], outputs=1, seed=0)
    hits = []
    for out, lab in zip(predict(model, tokens[32:]), labels[32:]):
        n_true = int((lab > 0).sum())
        top = np.argsort(-np.where(lab >= 0, out, -np.inf), axis=None)[:n_true]
        hits.append((lab.ravel()[top] > 0).mean())
    assert np.mean(hits) > 0.8


def test_appendix_b_heads_stay_available_as_a_secondary_protocol():
    from corelib.config import get_preset
    from corelib.evaluation import evaluate_encoder
    from corelib.evaluation.tasks import HEADS

    preset = get_preset("smoke", {"downstream.epochs": 1, "downstream.train": 40, "downstream.test": 20})
    ev = evaluate_encoder(build_model("rna", "tiny"), "rna", preset, seed=0, tasks={"TypeCls"}, protocol="heads")
    assert set(ev.metrics["protocol"]) == {HEADS}
    assert ev.primary_metrics()[["task", "metric"]].values.tolist() == [["TypeCls", "ACC"]]
    assert ev.item_metrics()["TypeCls"] == pytest.approx(ev.primary_metrics()["value"].item())
