"""SDPA attention (corelib/models/attention.py) against fair-esm's own, unmodified forward, for both families
(ESM-1b layout with learned positions = RNA-FM; ESM-2 with rotary embeddings): logits, masked-LM gradients
of every parameter and attention maps agree on padded batches; the q/k/v/out Linear hooks keep firing with
time-first inputs; pad keys get no attention unless `attend_padding`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corelib.data import load_pool, mlm_batches, tokenize
from corelib.data.tokens import pad_batch
from corelib.errors import InputError
from corelib.models import MODEL_PRESETS, build_model, get_family, per_sequence_loss

LENGTHS = [37, 120, 64, 9, 150, 88, 23, 101]   # residues kept of each demo sequence: a ragged batch


def _tokens(modality):
    seqs = [s[:n] for s, n in zip(load_pool(f"{modality}_demo", modality, limit=8)["seq"], LENGTHS)]
    return tokenize(seqs, modality, 1024)


def _pair(modality, seed=11):
    """Our model (SDPA by default) and a fresh fair-esm network with the same state_dict, its default path."""
    ours = build_model(modality, "tiny", seed=seed).eval()
    spec = MODEL_PRESETS[(modality, "tiny")]
    theirs = get_family(spec.family).build(spec, modality)   # fair-esm's own modules, not yet prepared
    theirs.load_state_dict(ours.net.state_dict())
    return ours, theirs.eval()


def _padded(modality, vocab):
    return torch.from_numpy(pad_batch([t.astype(np.int64) for t in _tokens(modality)], vocab.pad))


@pytest.mark.parametrize("modality", ["rna", "protein"])
def test_logits_equal_fair_esm_on_a_padded_batch(modality):
    ours, theirs = _pair(modality)
    assert ours.attention == "sdpa" and type(ours.net.layers[0].self_attn).__name__ == "SDPAMultiheadAttention"
    x = _padded(modality, ours.vocab)
    assert len(set((x != ours.vocab.pad).sum(1).tolist())) == len(LENGTHS)   # all lengths differ
    keep = x != ours.vocab.pad
    with torch.no_grad():
        expected = theirs(x)["logits"][keep]
        torch.testing.assert_close(ours(x)[keep], expected, rtol=1e-5, atol=1e-5)
        ours.attention = "eager"
        torch.testing.assert_close(ours(x)[keep], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modality", ["rna", "protein"])
def test_masked_lm_gradients_of_every_parameter_equal_fair_esm(modality):
    ours, theirs = _pair(modality)
    toks = _tokens(modality)
    inputs, labels, _ = next(mlm_batches(toks, np.arange(len(toks)), len(toks), ours.vocab, mask_seed=3))
    assert (inputs == ours.vocab.mask).any()           # ESM-2's token dropout is exercised too
    per_sequence_loss(ours(inputs), labels).sum().backward()
    per_sequence_loss(theirs(inputs)["logits"], labels).sum().backward()
    theirs_params = dict(theirs.named_parameters())
    total = float(torch.cat([p.grad.flatten() for p in theirs.parameters() if p.grad is not None]).norm())
    for name, p in ours.net.named_parameters():
        g, ref = p.grad, theirs_params[name].grad
        if ref is None:                                # the contact head is not on the MLM path
            assert g is None, name
            continue
        # 1e-5 relative; k_proj.bias's gradient is zero in exact arithmetic (softmax ignores a per-query
        # constant), so rounding noise is measured against the whole gradient there
        assert float((g - ref).norm()) <= 1e-5 * float(ref.norm()) + 1e-9 * total, name


@pytest.mark.parametrize("modality", ["rna", "protein"])
def test_attention_maps_and_contacts_come_from_fair_esms_computation(modality):
    ours, theirs = _pair(modality)
    x = _padded(modality, ours.vocab)
    with torch.no_grad():
        got, expected = ours.net(x, return_contacts=True), theirs(x, return_contacts=True)
    assert got["attentions"].shape == (len(LENGTHS), 2, 4, x.shape[1], x.shape[1])
    torch.testing.assert_close(got["attentions"], expected["attentions"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["contacts"], expected["contacts"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["logits"], expected["logits"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modality", ["rna", "protein"])
def test_q_k_v_out_hooks_fire_with_time_first_inputs(modality):
    model = build_model(modality, "tiny", seed=2).eval()
    x = _padded(modality, model.vocab)
    seen = {}
    attn = model.net.layers[1].self_attn

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = tuple(inputs[0].shape)
        return hook
    handles = [getattr(attn, n).register_forward_hook(keep(n)) for n in ("q_proj", "k_proj", "v_proj", "out_proj")]
    model(x)
    for h in handles:
        h.remove()
    assert seen == {n: (x.shape[1], x.shape[0], 64) for n in ("q_proj", "k_proj", "v_proj", "out_proj")}


@pytest.mark.parametrize("modality", ["rna", "protein"])
def test_pad_keys_get_no_attention_unless_attend_padding(modality):
    model = build_model(modality, "tiny", seed=5).eval()
    toks = _tokens(modality)
    x = _padded(modality, model.vocab)
    short = int(np.argmin([len(t) for t in toks]))
    alone = torch.from_numpy(toks[short].astype(np.int64))[None]
    n = alone.shape[1]
    with torch.no_grad():
        torch.testing.assert_close(model(x)[short, :n], model(alone)[0], rtol=1e-5, atol=1e-5)
        model.attend_padding = True
        sdpa = model(x)[short, :n]
        assert not torch.allclose(sdpa, model(alone)[0], atol=1e-3)   # the pads now take part
        model.attention = "eager"
        torch.testing.assert_close(model(x)[short, :n], sdpa, rtol=1e-5, atol=1e-5)


def test_an_unknown_attention_mode_is_refused():
    model = build_model("rna", "tiny")
    with pytest.raises(InputError, match="attention must be one of sdpa, eager"):
        model.attention = "flash"
