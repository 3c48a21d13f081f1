"""corelib.influence.rules: each layer type's per-sample gradient rule against torch.autograd.grad taken one
example at a time (batch size 1) on a tiny standalone module; uncovered layers are a one-line InputError."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from corelib.errors import InputError
from corelib.influence.hooks import PerSampleGradients
from corelib.influence.rules import (
    RULES,
    EmbeddingRule,
    LayerNormRule,
    LearnedPositionalEmbeddingRule,
    LinearRule,
    LMHeadBiasRule,
    RobertaLMHeadRule,
    find_rule,
    rule_for,
)

B, T, D, V, PAD = 4, 5, 6, 9, 1


def _loss(out: torch.Tensor) -> torch.Tensor:
    """A simple nonlinear per-example loss (B,): sum of sin(output) weighted by fixed random numbers."""
    w = torch.randn(out.shape[1:], generator=torch.Generator().manual_seed(11))
    return (torch.sin(out) * w).flatten(1).sum(1)


def _backward(module, x):
    """The module's rule, dL/d(output) from one backward of sum_b loss_b, and the sub-module outputs it keeps."""
    rule = rule_for(module, "m")
    kept = {}
    handles = [sub.register_forward_hook(lambda m, i, o, key=key: kept.__setitem__(key, o))
               for key, sub in rule.kept(module).items()]
    out = module(x)
    for h in handles:
        h.remove()
    (g,) = torch.autograd.grad(_loss(out).sum(), out)
    return rule, g, kept


def _rule_grads(module, x):
    """The module's rule applied to its batch input and dL/d(output) from one backward of sum_b loss_b."""
    rule, g, kept = _backward(module, x)
    with torch.no_grad():
        return rule.per_sample(module, x, g, kept)


def _oracle(module, x, names):
    """torch.autograd.grad of each example's loss on its own (batch size 1), stacked to (B, *shape)."""
    params = [getattr(module, n) for n in names]
    rows = []
    for i in range(x.shape[0]):
        g = torch.autograd.grad(_loss(module(x[i : i + 1])).sum(), params, allow_unused=True)
        rows.append([torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, params)])
    return {n: torch.stack([r[j] for r in rows]) for j, n in enumerate(names)}


def _check(module, x, rule_type, names):
    assert type(find_rule(module)) is rule_type
    assert list(find_rule(module).params(module)) == names
    got, want = _rule_grads(module, x), _oracle(module, x, names)
    assert list(got) == names
    for n in names:
        assert got[n].shape == (x.shape[0], *getattr(module, n).shape)
        torch.testing.assert_close(got[n], want[n], rtol=1e-6, atol=1e-6)


def _tokens_with_pads():
    x = torch.randint(PAD + 1, V, (B, T), generator=torch.Generator().manual_seed(3))
    x[1, 3:] = PAD
    x[2, 1:] = PAD
    return x


@pytest.mark.parametrize("shape", [(B, D), (B, T, D), (B, 2, 3, D)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_rule_matches_batch_size_1_autograd(shape, bias):
    torch.manual_seed(0)
    _check(nn.Linear(D, 3, bias=bias), torch.randn(shape), LinearRule, ["weight", "bias"] if bias else ["weight"])


@pytest.mark.parametrize("shape", [(B, D), (B, T, D)])
def test_layer_norm_rule_matches_batch_size_1_autograd(shape):
    torch.manual_seed(1)
    ln = nn.LayerNorm(D)
    with torch.no_grad():   # away from the (1, 0) initialisation, so a wrong x_hat would show
        ln.weight.normal_()
        ln.bias.normal_()
    _check(ln, torch.randn(shape), LayerNormRule, ["weight", "bias"])


@pytest.mark.parametrize("padding_idx", [None, PAD])
def test_embedding_rule_matches_batch_size_1_autograd(padding_idx):
    torch.manual_seed(2)
    x = _tokens_with_pads()
    x[0, 0] = x[3, 0] = x[3, 4]          # a row looked up twice in one example and by two examples
    _check(nn.Embedding(V, D, padding_idx=padding_idx), x, EmbeddingRule, ["weight"])


def test_learned_positional_embedding_rule_matches_batch_size_1_autograd():
    from esm.modules import LearnedPositionalEmbedding

    torch.manual_seed(3)
    emb = LearnedPositionalEmbedding(T + 2, D, PAD)
    _check(emb, _tokens_with_pads(), LearnedPositionalEmbeddingRule, ["weight"])


def test_roberta_lm_head_rule_matches_batch_size_1_autograd():
    """fair-esm's head applies its `weight` (the tied token embedding) functionally after layer_norm."""
    from esm.modules import RobertaLMHead

    torch.manual_seed(4)
    head = RobertaLMHead(D, V, nn.Parameter(torch.randn(V, D)))
    with torch.no_grad():
        head.bias.normal_()
    _check(head, torch.randn(B, T, D), RobertaLMHeadRule, ["bias", "weight"])


def test_hugging_face_esm_lm_head_rule_matches_batch_size_1_autograd():
    """Hugging Face's head: only the output bias; its `decoder` is a Linear with its own rule."""
    from transformers import EsmConfig
    from transformers.models.esm.modeling_esm import EsmLMHead

    torch.manual_seed(5)
    head = EsmLMHead(EsmConfig(vocab_size=V, hidden_size=D))
    assert type(find_rule(head.decoder)) is LinearRule
    _check(head, torch.randn(B, T, D), LMHeadBiasRule, ["bias"])


def test_rules_are_found_along_the_type_hierarchy():
    class MyLinear(nn.Linear):
        pass

    assert type(find_rule(MyLinear(2, 2))) is LinearRule
    assert nn.Linear in RULES and nn.Embedding in RULES and nn.LayerNorm in RULES
    assert find_rule(nn.Sequential()) is None


def test_an_uncovered_layer_is_a_one_line_input_error_naming_it():
    with pytest.raises(InputError) as err:
        rule_for(nn.Conv1d(2, 2, 3), "encoder.conv")
    message = str(err.value)
    assert "\n" not in message and "Conv1d" in message and "'encoder.conv'" in message

    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.ones(D))

        def forward(self, x):
            return x * self.s

    model = nn.Sequential(nn.Linear(D, D), Scale())
    with pytest.raises(InputError, match=r"^no per-sample gradient rule for Scale module '1' \(scored parameter 1\.s\)"):
        PerSampleGradients(model, dict(model.named_parameters()), lambda name, grad: None)
    with PerSampleGradients(model, {"0.weight": model[0].weight}, lambda name, grad: None):   # Scale unscored: fine
        pass


# ----------------------------------------------------------------------------- reductions (Eq. 9, Eq. 11)
def _rule_reduce(module, x, need):
    """The rule's reductions of the batch (as the hooks ask for them) from one backward of sum_b loss_b."""
    rule, g, kept = _backward(module, x)
    with torch.no_grad():
        return rule.reduce(module, x, g, kept, need)


def _positive(shape, seed, rank_one=False):
    gen = torch.Generator().manual_seed(seed)
    if rank_one:
        return torch.outer(torch.rand(shape[0], generator=gen) + 0.5, torch.rand(shape[1], generator=gen) + 0.5)
    return torch.rand(shape, generator=gen) + 0.1


@pytest.mark.parametrize("weighting", ["diagonal", "rank-one"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_reductions_equal_eq9_and_eq11_of_batch_size_1_gradients(weighting, bias, monkeypatch):
    """Eq. 9's sum_b g_b^2 and Eq. 11's sum_ij w_ij g_bij^2 from one batched GEMM (any weight) or from T x T
    Gram products (a rank-one weight, where they are cheaper) equal those of autograd's per-example gradients."""
    from corelib.influence import products

    torch.manual_seed(6)
    lin = nn.Linear(16, 12, bias=bias)
    x = torch.randn(T, B, 16).transpose(0, 1)          # a time-first layer's batch-first view (strided)
    names = ["weight", "bias"] if bias else ["weight"]
    want = _oracle(lin, x, names)
    w = {"weight": _positive((12, 16), 7, weighting == "rank-one"), "bias": _positive((12,), 8)}
    ghost = weighting == "rank-one"
    assert (products.WeightedNorm(w["weight"]).factors is not None) == ghost
    assert products.ghost_is_cheaper(T, 12, 16)
    if ghost:   # the Gram path must not form g_b at all
        monkeypatch.setattr(products, "outer_sum", lambda *a: pytest.fail("formed g_b"))
    norms = _rule_reduce(lin, x, {n: products.WeightedNorm(w[n]) for n in names})
    monkeypatch.undo()
    squares = _rule_reduce(lin, x, {n: products.SquaredSum() for n in names})
    assert set(norms) == set(squares) == set(names)
    for n in names:
        g = want[n].double()
        torch.testing.assert_close(squares[n], g.square().sum(0), rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(norms[n], (g.square() * w[n].double()).flatten(1).sum(1), rtol=1e-5, atol=1e-9)
    only = _rule_reduce(lin, x, {"weight": products.SquaredSum()})   # only what is asked for is formed
    assert set(only) == {"weight"}
    monkeypatch.setattr(products, "BUFFER_ELEMENTS", 12 * 16 * 3)     # slices of 3 sequences: the same values
    sliced = _rule_reduce(lin, x, {"weight": products.SquaredSum()})["weight"]
    torch.testing.assert_close(sliced, squares["weight"], rtol=1e-6, atol=1e-12)
    if not ghost:
        sliced = _rule_reduce(lin, x, {"weight": products.WeightedNorm(w["weight"])})["weight"]
        torch.testing.assert_close(sliced, norms["weight"], rtol=1e-6, atol=1e-12)


def test_roberta_lm_head_reductions_equal_those_of_its_gradients():
    from esm.modules import RobertaLMHead

    from corelib.influence import products

    torch.manual_seed(4)
    head = RobertaLMHead(D, V, nn.Parameter(torch.randn(V, D)))
    x = torch.randn(B, T, D)
    want = _oracle(head, x, ["bias", "weight"])
    w = {"bias": _positive((V,), 1), "weight": _positive((V, D), 2)}
    norms = _rule_reduce(head, x, {n: products.WeightedNorm(w[n]) for n in w})
    for n in w:
        torch.testing.assert_close(norms[n], (want[n].double().square() * w[n]).flatten(1).sum(1), rtol=1e-5, atol=1e-9)


def test_bf16_operands_are_multiplied_in_bf16_and_accumulated_in_fp32():
    """Under bf16 autocast a Linear ran on bf16-rounded operands: outer_sum rounds an fp32 partner to bf16 and
    returns the fp32-accumulated product of those values."""
    from corelib.influence.products import outer_sum

    gen = torch.Generator().manual_seed(0)
    d, a = torch.randn(B, 50, 7, generator=gen), torch.randn(B, 50, 9, generator=gen)
    got = outer_sum(d.bfloat16(), a)
    assert got.dtype == torch.float32
    want = torch.einsum("bto,bti->boi", d.bfloat16().double(), a.bfloat16().double())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
