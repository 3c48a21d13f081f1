"""corelib.influence: Eq. 9 and Eq. 11 from layer hooks against an independent batch-size-1 autograd
oracle, for every scope and both model families (and a Hugging Face ESM); batch-size invariance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corelib.data import get_vocab, load_pool, mlm_batches, tokenize
from corelib.influence import diagonal_fisher, resolve_damping, scope_params, self_influence
from corelib.models import MaskedLM, build_model, get_family, per_sequence_loss

DAMPING = 1e-3


def _tokens(modality, n=12, max_tokens=60):
    pool = load_pool(f"{modality}_demo", modality, limit=n)
    return tokenize(pool["seq"], modality, max_tokens), np.arange(n)


def _oracle(model, tokens, idx, scope, damping):
    """Slow and independent: one sequence at a time, torch.autograd.grad over the scoped parameters."""
    vocab = model.vocab
    params = scope_params(model, scope)
    model.eval()
    grads = []
    for inputs, labels, _ in mlm_batches(tokens, idx, 1, vocab, mask_seed=0):
        loss = per_sequence_loss(model(inputs), labels).sum()
        g = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        grads.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).flatten().double()
                                for gi, p in zip(g, params.values())]))
    order = [int(b[2][0]) for b in mlm_batches(tokens, idx, 1, vocab, mask_seed=0)]
    G = torch.stack(grads)[np.argsort(order)]
    fisher = G.square().mean(0)                                   # Eq. 9, dense
    scores = (G.square() / (fisher + damping)).sum(1)             # Eq. 11
    return fisher, scores.numpy()


def _ours(model, tokens, idx, scope, batch_size, damping=DAMPING, fisher=None):
    if fisher is None:
        fisher, _ = diagonal_fisher(model, mlm_batches(tokens, idx, batch_size, model.vocab, mask_seed=0), scope)
    out = list(self_influence(model, mlm_batches(tokens, idx, batch_size, model.vocab, mask_seed=0), fisher,
                              damping, scope))
    got = np.zeros(len(idx))
    for b_idx, scores, _, groups in out:
        got[b_idx] = scores
        assert np.allclose(np.sum(list(groups.values()), axis=0), scores)   # per-layer parts add up
    return fisher, got


@pytest.mark.parametrize("modality", ["rna", "protein"])
@pytest.mark.parametrize("scope", ["all", "linear", "lm_head.dense", "last:1"])
def test_fisher_and_scores_match_the_batch_size_1_autograd_oracle(modality, scope):
    model = build_model(modality, "tiny", seed=1)
    tokens, idx = _tokens(modality)
    fisher, got = _ours(model, tokens, idx, scope, batch_size=5)
    f_oracle, s_oracle = _oracle(model, tokens, idx, scope, DAMPING)
    f_ours = torch.cat([fisher[n].flatten().double() for n in scope_params(model, scope)])
    assert torch.allclose(f_ours, f_oracle, rtol=1e-4, atol=1e-12 + 1e-6 * float(f_oracle.max()))
    np.testing.assert_allclose(got, s_oracle, rtol=1e-4)


def test_hugging_face_esm_with_tied_decoder_matches_the_oracle(tmp_path):
    from transformers import EsmConfig, EsmForMaskedLM

    vocab = get_vocab("protein")
    torch.manual_seed(0)
    cfg = EsmConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, pad_token_id=vocab.pad, mask_token_id=vocab.mask,
                    max_position_embeddings=1026, position_embedding_type="absolute")
    net = EsmForMaskedLM(cfg)
    model = MaskedLM(net, "hf-esm", "protein", get_family("hf-esm").spec_of(net))
    assert model.net.lm_head.decoder.weight is model.net.esm.embeddings.word_embeddings.weight
    tokens, idx = _tokens("protein", n=8)
    _, got = _ours(model, tokens, idx, "all", batch_size=3)
    _, s_oracle = _oracle(model, tokens, idx, "all", DAMPING)
    np.testing.assert_allclose(got, s_oracle, rtol=1e-4)


@pytest.mark.parametrize("modality", ["rna", "protein"])
def test_scores_do_not_depend_on_the_batch_a_sequence_lands_in(modality):
    model = build_model(modality, "tiny", seed=2)
    pool = load_pool(f"{modality}_demo", modality, limit=40)
    tokens, idx = tokenize(pool["seq"], modality, 200), np.arange(40)   # lengths vary: padding differs
    fisher, first = _ours(model, tokens, idx, "all", batch_size=1)
    for bs in (7, 32):
        _, got = _ours(model, tokens, idx, "all", batch_size=bs, fisher=fisher)
        np.testing.assert_allclose(got, first, rtol=1e-5)


def test_a_transposed_gradient_would_be_caught(monkeypatch):
    """Break the engine on purpose (transpose the outer product in the Linear rule): the elementwise Fisher
    comparison with the oracle must fail. (Eq. 11 alone would not notice: a consistently transposed F cancels.)"""
    from corelib.influence.rules import RULES, LinearRule

    class TransposedLinear(LinearRule):
        def per_sample(self, module, inp, grad_out, kept):
            out = super().per_sample(module, inp, grad_out, kept)
            if module.in_features == module.out_features:
                out["weight"] = out["weight"].transpose(1, 2)
            return out

    model = build_model("rna", "tiny", seed=3)
    tokens, idx = _tokens("rna", n=6)
    monkeypatch.setitem(RULES, torch.nn.Linear, TransposedLinear())
    fisher, _ = _ours(model, tokens, idx, "linear", batch_size=3)
    monkeypatch.undo()
    f_oracle, _ = _oracle(model, tokens, idx, "linear", DAMPING)
    f_ours = torch.cat([fisher[n].flatten().double() for n in scope_params(model, "linear")])
    assert not torch.allclose(f_ours, f_oracle, rtol=1e-4)
    good, _ = _ours(model, tokens, idx, "linear", batch_size=3)        # the registry is restored
    assert torch.allclose(torch.cat([good[n].flatten().double() for n in scope_params(model, "linear")]), f_oracle,
                          rtol=1e-4, atol=1e-12 + 1e-6 * float(f_oracle.max()))


def test_damping_auto_is_a_tenth_of_the_mean_fisher_entry():
    fisher = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([[2.0, 2.0]])}
    assert resolve_damping(fisher, "auto") == pytest.approx(0.1 * 2.0)
    assert resolve_damping(fisher, 1e-8) == 1e-8


def test_unknown_scope_and_unsupported_parameters_are_refused():
    from corelib.errors import InputError
    from corelib.influence import PerSampleGradients

    model = build_model("rna", "tiny")
    with pytest.raises(InputError, match="unknown scope"):
        scope_params(model, "everything")
    with pytest.raises(InputError, match="the model has 2 blocks"):
        scope_params(model, "last:99")
    model.net.extra = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(InputError, match="no per-sample gradient rule for ProteinBertModel module 'net' "
                                         r"\(scored parameter net.extra\)"):
        PerSampleGradients(model, scope_params(model, "all"), lambda n, g: None)
