"""corelib.influence: Eq. 9 and Eq. 11 from layer hooks against an independent batch-size-1 autograd
oracle, for every scope and both model families (and a Hugging Face ESM); batch-size invariance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corelib.data import get_vocab, load_pool, mlm_batches, tokenize
from corelib.influence import diagonal_fisher, self_influence
from corelib.influence.fisher import resolve_damping
from corelib.influence.hooks import scope_params
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


def test_an_output_the_model_modifies_in_place_is_cloned_and_keeps_its_gradient():
    """A Linear whose output the model scales in place, with nothing below it requiring grad: a hook left on
    that output would never fire (autograd.grad stops at the in-place node); the hooks detect the change and
    rerun the forward with a clone, so the per-sample gradients equal autograd's one example at a time."""
    from torch import nn

    from corelib.influence.fisher import _run

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.lin = nn.Embedding(7, 5), nn.Linear(5, 7)

        def forward(self, x):
            y = self.lin(self.emb(x))
            y.mul_(3.0)
            return y

    torch.manual_seed(0)
    model = Scaled()
    x = torch.randint(0, 7, (3, 6))
    labels = torch.where(torch.rand(3, 6) < 0.5, x, torch.full_like(x, -100))
    labels[:, 0] = x[:, 0]
    got = {}
    for _ in _run(model, [(x, labels, np.arange(3))], {"lin.weight": model.lin.weight},
                  lambda n, g: got.__setitem__(n, g), "cpu"):
        pass
    want = torch.stack([torch.autograd.grad(per_sequence_loss(model(x[i:i + 1]), labels[i:i + 1]).sum(),
                                            model.lin.weight)[0] for i in range(3)])
    assert set(got) == {"lin.weight"}
    torch.testing.assert_close(got["lin.weight"], want, rtol=1e-5, atol=1e-7)


def test_a_layer_output_modified_in_place_still_gets_its_own_gradient():
    """fair-esm's unfused attention scales q_proj's output in place (q *= scaling). The hooks see that the
    output changed after they saw it, rerun the forward with that output cloned, and the scores still equal
    the oracle's (a hook left on the modified tensor would miss q_proj's gradient or get the wrong one)."""
    model = build_model("rna", "tiny", seed=4)
    model.attention = "eager"
    tokens, idx = _tokens("rna", n=6)
    fisher, got = _ours(model, tokens, idx, "linear", batch_size=4)
    f_oracle, s_oracle = _oracle(model, tokens, idx, "linear", DAMPING)
    f_ours = torch.cat([fisher[n].flatten().double() for n in scope_params(model, "linear")])
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


def test_hugging_face_head_whose_bias_is_its_decoder_bias_counts_it_once():
    """transformers' RobertaLMHead: `lm_head.bias` is `lm_head.decoder.bias` (one Parameter, added inside the
    decoder Linear). The decoder's rule forms it; the head's rule must not deliver it a second time."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    vocab = get_vocab("protein")
    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, pad_token_id=vocab.pad, max_position_embeddings=80, type_vocab_size=1)
    from corelib.models.families.hf import HfFamily

    class Roberta(HfFamily):   # a transformers masked LM outside the registered families, adapted in place
        name, hf_classes, backbone = "roberta-test", ("RobertaForMaskedLM",), "roberta"

    net = RobertaForMaskedLM(cfg)
    model = MaskedLM(net, Roberta(), "protein", Roberta().spec_of(net))
    head = model.net.lm_head
    assert head.decoder.bias is head.bias
    with torch.no_grad():
        head.bias.normal_()
    tokens, idx = _tokens("protein", n=6, max_tokens=40)
    fisher, got = _ours(model, tokens, idx, "all", batch_size=4)
    f_oracle, s_oracle = _oracle(model, tokens, idx, "all", DAMPING)
    names = list(scope_params(model, "all"))
    assert "net.lm_head.bias" in names
    f_ours = torch.cat([fisher[n].flatten().double() for n in names])
    assert torch.allclose(f_ours, f_oracle, rtol=1e-4, atol=1e-12 + 1e-6 * float(f_oracle.max()))
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
    from corelib.influence.rules import RULES, LinearRule, Rule

    class TransposedLinear(LinearRule):
        def per_sample(self, module, inp, grad_out, kept):
            out = super().per_sample(module, inp, grad_out, kept)
            if module.in_features == module.out_features:
                out["weight"] = out["weight"].transpose(1, 2)
            return out

        def reduce(self, module, inp, grad_out, kept, need):   # Eq. 9 through the broken per-sample gradients
            return Rule.reduce(self, module, inp, grad_out, kept, need)

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


@pytest.mark.parametrize("modality", ["rna", "protein"])
def test_bf16_scores_agree_with_fp32(modality):
    """The bf16 path (autocast forward, bf16 products accumulated in fp32; Fisher and scores each computed in
    their own precision, as a bf16 run does) against fp32 on CPU. Tolerance: bf16 keeps 8 significant bits
    (relative spacing 2^-8 = 3.9e-3); every per-sample gradient entry carries a few such rounding errors from
    the rounded activations, and a score sums ~10^5 squared, weighted entries whose errors are independent
    and partly cancel, so scores may differ by about one spacing: a median relative difference of at most
    1e-2 (2.5 spacings), none above 5e-2, and the same order (Spearman >= 0.99)."""
    from scipy.stats import spearmanr

    model = build_model(modality, "tiny", seed=5)
    tokens, idx = _tokens(modality, n=24, max_tokens=120)
    out = {}
    for precision in ("fp32", "bf16"):
        batches = lambda: mlm_batches(tokens, idx, 8, model.vocab, mask_seed=0)  # noqa: E731
        fisher, _ = diagonal_fisher(model, batches(), "all", precision=precision)
        out[precision] = np.zeros(len(idx))
        for b_idx, scores, _, _ in self_influence(model, batches(), fisher, "auto", "all", precision=precision):
            out[precision][b_idx] = scores
    rel = np.abs(out["bf16"] - out["fp32"]) / out["fp32"]
    assert np.median(rel) <= 1e-2 and rel.max() <= 5e-2, rel
    assert spearmanr(out["fp32"], out["bf16"]).statistic >= 0.99


def test_damping_auto_is_a_tenth_of_the_mean_fisher_entry():
    fisher = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([[2.0, 2.0]])}
    assert resolve_damping(fisher, "auto") == pytest.approx(0.1 * 2.0)
    assert resolve_damping(fisher, 1e-8) == 1e-8


def test_unknown_scope_and_unsupported_parameters_are_refused():
    from corelib.errors import InputError
    from corelib.influence.hooks import PerSampleGradients

    model = build_model("rna", "tiny")
    with pytest.raises(InputError, match="unknown scope"):
        scope_params(model, "everything")
    with pytest.raises(InputError, match="the model has 2 blocks"):
        scope_params(model, "last:99")
    model.net.extra = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(InputError, match="no per-sample gradient rule for ProteinBertModel module 'net' "
                                         r"\(scored parameter net.extra\)"):
        PerSampleGradients(model, scope_params(model, "all"), lambda n, g: None)
