"""Per-sample gradient rules (Section 3.2), one small class per layer type, as kronfluence's tracked modules:
each rule names the parameters it forms and turns a layer's input and output gradient into the per-sample
gradients g_m of those parameters that Eq. 9 and Eq. 11 are built from.

Activations reach a rule batch-first, (B, ..., C); `PerSampleGradients` (hooks.py) undoes time-first
layouts, sums tied parameters and checks that every scored parameter has a rule (`rule_for`). A consumer that
needs only Eq. 9's squares or Eq. 11's weighted norms asks `Rule.reduce`, which a rule may form without the
(B, *shape) gradients (products.py: one batched GEMM per Linear, squared in place).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from corelib.errors import InputError
from corelib.influence.products import Reduction, outer_sum


class Rule:
    """Base rule: the parameters a layer type owns and their per-sample gradients (B, *shape) (Sec. 3.2)."""

    def params(self, module: nn.Module) -> dict[str, nn.Parameter]:
        """The module's own parameters this rule forms gradients for, by attribute name (Sec. 3.2)."""
        raise NotImplementedError

    def forms(self, module: nn.Module) -> dict[str, nn.Parameter]:
        """The covered parameters this rule delivers itself; an alias another layer's rule forms is left out (Sec. 3.2)."""
        return self.params(module)

    def kept(self, module: nn.Module) -> dict[str, nn.Module]:
        """Submodules whose forward outputs `per_sample` needs besides the layer's input (Sec. 3.2)."""
        return {}

    def per_sample(self, module: nn.Module, inp: torch.Tensor, grad_out: torch.Tensor,
                   kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-sample gradients {attribute: (B, *shape)} from the input and dL/d(output), batch-first (Sec. 3.2)."""
        raise NotImplementedError

    def reduce(self, module: nn.Module, inp: torch.Tensor, grad_out: torch.Tensor, kept: dict[str, torch.Tensor],
               need: dict[str, Reduction]) -> dict[str, torch.Tensor]:
        """{attribute: need[attribute] of its per-sample gradients} (Eq. 9 squares or Eq. 11 weighted norms);
        by default from `per_sample` (Sec. 3.2)."""
        grads = self.per_sample(module, inp, grad_out, kept)
        return {attr: red.gradients(grads[attr]) for attr, red in need.items() if attr in grads}


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C) view of a batch-first activation (B, C) or (B, ..., C), in its own dtype (no copy)."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def _present(module: nn.Module, *names: str) -> dict[str, nn.Parameter]:
    return {n: getattr(module, n) for n in names if getattr(module, n, None) is not None}


class LinearRule(Rule):
    """nn.Linear: per-sample weight gradient sum_t go_t a_t^T and bias gradient sum_t go_t (Sec. 3.2)."""

    def params(self, module):
        """weight, and bias when the layer has one (Sec. 3.2)."""
        return _present(module, "weight", "bias")

    def per_sample(self, module, inp, grad_out, kept):
        """Outer products of output gradients and inputs summed over positions (Sec. 3.2)."""
        a, go = _tokens(inp), _tokens(grad_out)
        out = {"weight": outer_sum(go, a)}
        if module.bias is not None:
            out["bias"] = go.float().sum(1)
        return out

    def reduce(self, module, inp, grad_out, kept, need):
        """The weight's reduction from inputs and output gradients (one batched GEMM, or T x T Gram products),
        the bias's from sum_t go_t; only the attributes in `need` are formed (Eq. 9, Eq. 11)."""
        a, go = _tokens(inp), _tokens(grad_out)
        out = {}
        if "weight" in need:
            out["weight"] = need["weight"].linear(go, a)
        if "bias" in need and module.bias is not None:
            out["bias"] = need["bias"].gradients(go.float().sum(1))
        return out


class LayerNormRule(Rule):
    """nn.LayerNorm: per-sample gradients of the affine scale (sum_t go_t x_hat_t) and shift (sum_t go_t) (Sec. 3.2)."""

    def params(self, module):
        """weight and bias, when elementwise-affine (Sec. 3.2)."""
        return _present(module, "weight", "bias")

    def per_sample(self, module, inp, grad_out, kept):
        """Recomputes the normalised input x_hat and sums over positions (Sec. 3.2)."""
        shape = tuple(module.normalized_shape)
        x = inp.reshape(inp.shape[0], -1, *shape).float()
        go = grad_out.reshape(grad_out.shape[0], -1, *shape).float()
        out = {}
        if module.weight is not None:
            out["weight"] = (go * F.layer_norm(x, shape, eps=module.eps)).sum(1)
        if module.bias is not None:
            out["bias"] = go.sum(1)
        return out


class EmbeddingRule(Rule):
    """nn.Embedding: output gradients scattered onto the looked-up rows; the padding row gets none (Sec. 3.2)."""

    def params(self, module):
        """The embedding table (Sec. 3.2)."""
        return {"weight": module.weight}

    def indices(self, module, inp: torch.Tensor) -> torch.Tensor:
        """The rows the layer looked up: its input (Sec. 3.2)."""
        return inp

    def per_sample(self, module, inp, grad_out, kept):
        """Per-sample scatter-add of dL/d(output) into a (B, num_embeddings, dim) gradient (Sec. 3.2)."""
        idx = self.indices(module, inp).reshape(inp.shape[0], -1)
        go = grad_out.reshape(grad_out.shape[0], -1, grad_out.shape[-1]).float()
        grad = torch.zeros(go.shape[0], module.num_embeddings, go.shape[-1], device=go.device)
        grad.scatter_add_(1, idx.unsqueeze(-1).expand(-1, -1, go.shape[-1]), go)
        if module.padding_idx is not None:
            grad[:, module.padding_idx] = 0
        return {"weight": grad}


class LearnedPositionalEmbeddingRule(EmbeddingRule):
    """fair-esm / RNA-FM LearnedPositionalEmbedding: an embedding of positions counted from the pad mask (Sec. 3.2)."""

    def indices(self, module, inp):
        """Positions padding_idx + 1, 2, ... over real tokens, padding_idx over pads, as the layer computes (Sec. 3.2)."""
        mask = inp.ne(module.padding_idx).int()
        return (torch.cumsum(mask, dim=1) * mask).long() + module.padding_idx


def _decoder_bias_alias(module: nn.Module) -> bool:
    """True when the head's `bias` is its `decoder` Linear's bias (one Parameter, which LinearRule forms); an
    InputError when the head has both a decoder bias and another bias of its own (which one its forward adds
    is not known from the modules alone)."""
    decoder = getattr(module, "decoder", None)
    if not isinstance(decoder, nn.Linear) or decoder.bias is None:
        return False
    if decoder.bias is module.bias:
        return True
    raise InputError(f"{type(module).__name__}: its bias is not its decoder Linear's bias, and the decoder has a "
                     "bias of its own; no rule knows which one the head adds")


class LMHeadBiasRule(Rule):
    """Hugging Face EsmLMHead / RobertaLMHead: the output bias. EsmLMHead adds it after a bias-free `decoder`
    Linear (formed here); RobertaLMHead's bias *is* its decoder's bias (tied), which the decoder's LinearRule
    forms, so this rule then forms nothing (a second delivery would count the bias twice) (Sec. 3.2)."""

    def params(self, module):
        """The vocabulary bias (Sec. 3.2)."""
        return {"bias": module.bias}

    def forms(self, module):
        """The bias, unless it is the decoder Linear's (Sec. 3.2)."""
        return {} if _decoder_bias_alias(module) else self.params(module)

    def per_sample(self, module, inp, grad_out, kept):
        """sum_t dL/d(logits_t), or nothing for a decoder's tied bias (Sec. 3.2)."""
        if _decoder_bias_alias(module):
            return {}
        return {"bias": _tokens(grad_out).float().sum(1)}


class RobertaLMHeadRule(LMHeadBiasRule):
    """fair-esm / RNA-FM RobertaLMHead: output bias plus the tied embedding it applies functionally,
    logits = layer_norm(...) W^T + b, formed from the kept layer_norm output (Sec. 3.2)."""

    def params(self, module):
        """bias and the tied projection `weight`; only the bias for heads with a `decoder` Linear (Sec. 3.2)."""
        return super().params(module) if hasattr(module, "decoder") else {"bias": module.bias, "weight": module.weight}

    def forms(self, module):
        """As `params`, less a bias that is the decoder's (Hugging Face RobertaLMHead) (Sec. 3.2)."""
        return super().forms(module) if hasattr(module, "decoder") else self.params(module)

    def kept(self, module):
        """The layer_norm output, the projection's input (Sec. 3.2)."""
        return {} if hasattr(module, "decoder") else {"features": module.layer_norm}

    def per_sample(self, module, inp, grad_out, kept):
        """bias: sum_t go_t; weight: sum_t go_t h_t^T with h the layer_norm output (Sec. 3.2)."""
        out = super().per_sample(module, inp, grad_out, kept)
        if not hasattr(module, "decoder"):
            out["weight"] = outer_sum(_tokens(grad_out), _tokens(kept["features"]))
        return out

    def reduce(self, module, inp, grad_out, kept, need):
        """The projection weight's reduction through the Linear path (products.py), the bias's from sum_t go_t."""
        if hasattr(module, "decoder"):
            return super().reduce(module, inp, grad_out, kept, need)
        go = _tokens(grad_out)
        out = {}
        if "weight" in need:
            out["weight"] = need["weight"].linear(go, _tokens(kept["features"]))
        if "bias" in need:
            out["bias"] = need["bias"].gradients(go.float().sum(1))
        return out


class DecoderBiasAliasRule(Rule):
    """multimolecule MaskedLMHead (ESM-C, RNA-FM): its `bias` is the very Parameter of its `decoder` Linear
    (decoder.bias, tied), which LinearRule forms together with the decoder weight. The head's own forward
    applies the decoder functionally; corelib.models.MaskedLM runs it through the `decoder` module instead
    (`head_logits`), so this rule forms nothing itself: the alias only must not go uncovered (Sec. 3.2)."""

    def params(self, module):
        """bias, when it is the decoder's bias; an untied bias would go unformed, so it is refused (Sec. 3.2)."""
        bias = getattr(module, "bias", None)
        if bias is None:
            return {}
        decoder = getattr(module, "decoder", None)
        if not isinstance(decoder, nn.Linear) or decoder.bias is not bias:
            raise InputError(f"{type(module).__name__}: its bias is not its decoder Linear's bias, so no rule forms it")
        return {"bias": bias}

    def forms(self, module):
        """Nothing: the decoder's LinearRule forms the tied bias (Sec. 3.2)."""
        return {}

    def per_sample(self, module, inp, grad_out, kept):
        """Nothing: the decoder's LinearRule delivers the (tied) bias (Sec. 3.2)."""
        return {}


# Keys: torch layer types, matched along the module's MRO (subclasses inherit their parent's rule), and, for
# third-party layers corelib does not import (fair-esm and rna-fm ship separate copies of the same classes;
# transformers is slow to import), the class name.
RULES: dict[type | str, Rule] = {
    nn.Linear: LinearRule(),
    nn.LayerNorm: LayerNormRule(),
    nn.Embedding: EmbeddingRule(),
    "LearnedPositionalEmbedding": LearnedPositionalEmbeddingRule(),
    "RobertaLMHead": RobertaLMHeadRule(),
    "EsmLMHead": LMHeadBiasRule(),
    "MaskedLMHead": DecoderBiasAliasRule(),
}


def find_rule(module: nn.Module) -> Rule | None:
    """The registered rule of the module's most specific type (class or class name along its MRO), or None (Sec. 3.2)."""
    for cls in type(module).__mro__:
        rule = RULES.get(cls, RULES.get(cls.__name__))
        if rule is not None:
            return rule
    return None


def rule_for(module: nn.Module, path: str, param: str | None = None) -> Rule:
    """The module's rule; an InputError naming the module's path and type when no rule covers it (Sec. 3.2)."""
    rule = find_rule(module)
    if rule is None:
        known = ", ".join(k if isinstance(k, str) else k.__name__ for k in RULES)
        which = f" (scored parameter {param})" if param else ""
        raise InputError(f"no per-sample gradient rule for {type(module).__name__} module {path or '<model>'!r}"
                         f"{which}; rules cover {known}")
    return rule
