"""Compat mode (`--compat bio-coreset`) against the official recipe computed on an independent path: a plain
fair-esm ProteinBertModel with the RNA-FM alphabet (never corelib's MaskedLM), no key padding mask in its
layers as the official model file (bio-coreset's coreset/model_override.py sets `padding_mask = None`
after zeroing the pad embeddings), the official tokenization (whole sequence, then the first 1,024 tokens,
pad to 1,024 with every position a label), plain autograd one sequence at a time."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from corelib.config import get_preset
from corelib.data import get_vocab, load_pool
from corelib.influence import run_scoring
from corelib.models import MaskedLM, build_model, save_checkpoint
from corelib.selection import read_scores

PRESET = get_preset("smoke", {"scoring.subset_size": 16, "data.max_tokens": 66, "data.pool_limit": None})
WIDTH = 1024
LENGTHS = [31, 120, 57, 9, 200, 76, 143, 18, 95, 64, 170, 40]   # residues kept: 12 sequences, all lengths differ


def _write_fasta(path, ids, seqs):
    path.write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, seqs)))
    return path


def _official_net(state: dict, attend_padding: bool):
    """RNA-FM's architecture as fair-esm builds it, with the checkpoint's weights; its layers get no key
    padding mask when `attend_padding` (the official model file), fair-esm's own forward otherwise."""
    import fm
    from esm.model.esm1 import ProteinBertModel

    args = argparse.Namespace(arch="roberta_large", layers=2, embed_dim=64, ffn_embed_dim=256, attention_heads=4,
                              max_positions=1024, emb_layer_norm_before=True, token_dropout=False)
    net = ProteinBertModel(args, fm.Alphabet.from_architecture("ESM-1b", "rna"))
    net.load_state_dict(state)
    if attend_padding:
        for layer in net.layers:
            layer.register_forward_pre_hook(
                lambda module, args, kwargs: (args, {**kwargs, "self_attn_padding_mask": None}), with_kwargs=True)
    return net.eval()


def _official_scores(state: dict, seqs, attend_padding: bool = True) -> np.ndarray:
    """bio-coreset's get_inf.py + influence.py: lm_head.dense.weight only, mean cross-entropy over all 1,024
    positions (pad included), diag Fisher = mean g^2 over the scored set, score = -sum g^2 / (F + 1e-8)."""
    import fm

    net = _official_net(state, attend_padding)
    converter = fm.Alphabet.from_architecture("ESM-1b", "rna").get_batch_converter()
    weight = net.lm_head.dense.weight
    grads = []
    for seq in seqs:
        toks = converter([("seq", seq)])[2][0][:WIDTH]
        x = torch.full((1, WIDTH), net.padding_idx, dtype=torch.long)
        x[0, : len(toks)] = toks
        logits = net(x)["logits"]
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), x.view(-1))
        grads.append(torch.autograd.grad(loss, weight)[0].flatten().double())
    G = torch.stack(grads)
    fisher = G.square().mean(0)
    return -(G.square() / (fisher + 1e-8)).sum(1).numpy()


def test_compat_scores_equal_the_official_recipe_on_an_independent_fair_esm_model(tmp_path):
    pool = load_pool("rna_demo", "rna", limit=len(LENGTHS))
    seqs = [s[:n] for s, n in zip(pool["seq"], LENGTHS)]
    assert [len(s) for s in seqs] == LENGTHS
    fasta = _write_fasta(tmp_path / "pool.fa", pool["id"], seqs)
    ckpt = save_checkpoint(build_model("rna", "tiny", seed=7), tmp_path / "m.pt")
    scores = read_scores(run_scoring(fasta, "rna", tmp_path / "c", PRESET, checkpoint=ckpt, compat="bio-coreset",
                                     batch_size=5, progress=False))[0]
    assert list(scores["id"]) == list(pool["id"])
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    expected = _official_scores(state, seqs)
    np.testing.assert_allclose(scores["score"], expected, rtol=1e-5)
    # the check can see the padding difference: masking pad keys gives other scores
    masked = _official_scores(state, seqs, attend_padding=False)
    assert not np.allclose(masked, expected, rtol=1e-3)


def test_compat_feeds_the_first_1024_tokens_of_a_long_sequence_without_eos(tmp_path, monkeypatch):
    pool = load_pool("rna_demo", "rna", limit=3)
    long_seq = (pool["seq"][1] * 3)[:1500]
    seqs = [pool["seq"][0][:50], long_seq]
    fasta = _write_fasta(tmp_path / "pool.fa", ["short", "long"], seqs)
    fed = []
    forward = MaskedLM.forward

    def recording(self, tokens):
        fed.append((tokens.detach().clone(), self.attend_padding))
        return forward(self, tokens)

    monkeypatch.setattr(MaskedLM, "forward", recording)
    ckpt = save_checkpoint(build_model("rna", "tiny", seed=3), tmp_path / "m.pt")
    run_scoring(fasta, "rna", tmp_path / "c", PRESET, checkpoint=ckpt, compat="bio-coreset", batch_size=2,
                progress=False)
    vocab = get_vocab("rna")
    assert len(fed) == 2                                           # the Fisher pass and the scoring pass
    for tokens, attend_padding in fed:
        assert attend_padding and tokens.shape == (2, WIDTH)
        short, long = tokens
        np.testing.assert_array_equal(short[:52].numpy(), vocab.encode(seqs[0]))
        assert (short[52:] == vocab.pad).all()
        np.testing.assert_array_equal(long.numpy(), vocab.encode(long_seq)[:WIDTH])
        assert long[0] == vocab.cls and not (long == vocab.eos).any() and not (long == vocab.pad).any()


@pytest.mark.parametrize("attend_padding", [False, True])
def test_attend_padding_matches_the_plain_fair_esm_model(attend_padding):
    """MaskedLM's switch against the independent model above, on a pad-heavy batch, at non-pad positions."""
    model = build_model("rna", "tiny", seed=9).eval()
    model.attend_padding = attend_padding
    net = _official_net(model.net.state_dict(), attend_padding)
    vocab = model.vocab
    rows = [vocab.encode(s[:n]) for s, n in zip(load_pool("rna_demo", "rna", limit=4)["seq"], (20, 90, 45, 7))]
    x = torch.full((len(rows), 128), vocab.pad, dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : len(r)] = torch.from_numpy(r)
    keep = x != vocab.pad
    with torch.no_grad():
        torch.testing.assert_close(model(x)[keep], net(x)["logits"][keep], rtol=1e-5, atol=1e-5)
