"""Per-sample gradients from layer hooks (Section 3.2): which parameters are scored (scope) and the hook
context that forms per-sequence gradients layer by layer, as kronfluence and opacus do; each layer type's
rule lives in rules.py.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict

import torch
from torch import nn

from corelib.errors import InputError
from corelib.influence.rules import rule_for

SCOPES = ("all", "linear", "lm_head.dense", "last:N")


def scope_params(model: nn.Module, scope: str = "all") -> dict[str, nn.Parameter]:
    """The parameters Eq. 11 runs over: `all` (the paper), `linear` (all Linear weights),
    `lm_head.dense` (the official code's one layer, weight only) or `last:N` (the last N blocks)."""
    named = dict(model.named_parameters())
    if scope == "all":
        return named
    if scope == "linear":
        linear = {f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, nn.Linear)}
        return {k: v for k, v in named.items() if k in linear}
    if scope == "lm_head.dense":
        out = {k: v for k, v in named.items() if k.endswith("lm_head.dense.weight")}
        if not out:
            raise InputError("scope lm_head.dense: this model has no lm_head.dense layer")
        return out
    if scope.startswith("last:"):
        try:
            n = int(scope.split(":", 1)[1])
        except ValueError:
            raise InputError(f"scope {scope!r}: expected last:N with an integer N") from None
        blocks = sorted({int(m) for m in (_block(k) for k in named) if m is not None})
        if not 1 <= n <= len(blocks):
            raise InputError(f"scope {scope!r}: the model has {len(blocks)} blocks")
        keep = set(blocks[-n:])
        return {k: v for k, v in named.items() if _block(k) is not None and int(_block(k)) in keep}
    raise InputError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")


def _block(name: str) -> str | None:
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p in ("layers", "layer") and parts[i + 1].isdigit():
            return parts[i + 1]
    return None


def param_group(name: str) -> str:
    """Report group of a parameter: layer_NN, embed, lm_head or other (per-layer contributions)."""
    block = _block(name)
    if block is not None:
        return f"layer_{int(block):02d}"
    if "lm_head" in name:
        return "lm_head"
    if "embed" in name or "position" in name:
        return "embed"
    return "other"


# ----------------------------------------------------------------------------- per-sample gradients
class PerSampleGradients(contextlib.AbstractContextManager):
    """Hooks that hand each scoped parameter's per-sample gradients to `consume(name, value)` (Sec. 3.2).

    Each layer's gradients come from its rule in `rules.RULES` (Linear, LayerNorm, Embedding with padding_idx
    and fair-esm's learned positions, and LM heads that apply the tied embedding functionally or add an
    output bias). A scoped parameter no rule covers is an InputError, never a silent omission. Call
    `flush()` after backward to deliver the tied parameters.

    Without `reductions`, `value` is the per-sample gradient (B, *shape) in float32. With `reductions`
    ({name: products.Reduction}, every scoped name), `value` is that reduction: Eq. 9's sum_b g_b^2 or Eq. 11's
    weighted norms, which a rule may form without the (B, *shape) tensor (one batched GEMM per Linear). A
    parameter used by several layers (tied) is summed over them as full gradients first, then reduced.
    """

    def __init__(self, model, params: dict[str, nn.Parameter], consume, reductions: dict | None = None):
        self.model, self.consume, self.reductions = model, consume, reductions
        self.names = {id(p): n for n, p in params.items()}
        if reductions is not None and set(reductions) != set(params):
            raise ValueError("reductions must name every scoped parameter")
        self.handles, self.buffer, self.outputs, self.features = [], {}, [], {}
        self.versions, self.cloned = [], set()
        self.batch_size = None
        plan, users = _plan(model, self.names)
        self.tied = {i for i, c in users.items() if c > 1}
        self.time_first = tuple(getattr(model, "time_first", ()))
        for mname, mod, rule in plan:
            formed = {attr: p for attr, p in rule.forms(mod).items() if id(p) in self.names}
            if not formed:
                continue   # an alias another layer's rule forms (a head's tied decoder bias)
            self.handles.append(mod.register_forward_hook(self._forward_hook(mname, rule, formed)))
            for key, sub in rule.kept(mod).items():
                self.handles.append(sub.register_forward_hook(self._keep_output(mod, key)))

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.begin_batch()   # the kept LM-head inputs and the targets hold a graph
        return False

    def _deliver_full(self, param, grad):
        key = id(param)
        grad = grad.float()
        if key in self.tied:
            self.buffer[key] = self.buffer[key] + grad if key in self.buffer else grad
        elif self.reductions is None:
            self.consume(self.names[key], grad)
        else:
            self.consume(self.names[key], self.reductions[self.names[key]].gradients(grad))

    def flush(self):
        """Deliver the summed per-sample gradients of tied parameters (call after backward; Sec. 3.2)."""
        for key, grad in self.buffer.items():
            name = self.names[key]
            self.consume(name, grad if self.reductions is None else self.reductions[name].gradients(grad))
        self.buffer = {}

    def _batch_first(self, mname: str, x: torch.Tensor) -> torch.Tensor:
        """Batch-first view of an activation, whatever the layer's layout ((T, B, C) in fair-esm's layers)."""
        if x.ndim == 3 and mname.startswith(self.time_first):
            x = x.transpose(0, 1)
        if self.batch_size is not None and x.shape[0] != self.batch_size:
            raise RuntimeError(f"layer {mname}: batch axis {x.shape[0]} != batch size {self.batch_size}")
        return x

    def _keep_output(self, owner, key):
        def hook(mod, inputs, output):
            self.features[(id(owner), key)] = output
        return hook

    def _forward_hook(self, mname, rule, formed):
        def hook(module, inputs, output):
            if not torch.is_grad_enabled() or not output.requires_grad:
                return None
            inp = inputs[0]
            kept = {key: self.features.get((id(module), key)) for key in rule.kept(module)}

            def on_grad(g):
                self._per_sample(mname, module, rule, formed, inp, g, kept)

            self.outputs.append(output)   # autograd.grad's targets: dL/d(output) of every hooked layer
            if id(module) not in self.cloned:
                # the output's own hook; `modified_in_place` checks afterwards that the model left it alone
                output.register_hook(on_grad)
                self.versions.append((id(module), output, output._version))
                return None
            # The model gets a clone, whose hook receives dL/d(output) although the model modifies it in
            # place (fair-esm's unfused attention scales q_proj's output in place); autograd.grad targets the
            # untouched original, so the backward passes through the clone.
            out = output.clone()
            out.register_hook(on_grad)
            return out
        return hook

    def begin_batch(self, batch_size: int | None = None) -> None:
        """Forget the previous forward's targets and kept activations (call before each forward)."""
        self.outputs.clear()
        self.versions.clear()
        self.features.clear()
        self.batch_size = batch_size

    def modified_in_place(self) -> set[int]:
        """Layers whose output the model modified in place after the hook saw it; they are cloned from now on,
        and the caller reruns the forward (a hooked output changed in place would get a wrong gradient)."""
        changed = {key for key, out, version in self.versions if out._version != version}
        self.cloned |= changed
        return changed

    @torch.no_grad()
    def _per_sample(self, mname, mod, rule, formed, inp, g, kept):
        layout = self._batch_first
        inp, g, kept = layout(mname, inp), layout(mname, g), {k: layout(mname, v) for k, v in kept.items()}
        full = formed if self.reductions is None else {a: p for a, p in formed.items() if id(p) in self.tied}
        if full:
            grads = rule.per_sample(mod, inp, g, kept)
            for attr, param in full.items():
                if attr in grads:
                    self._deliver_full(param, grads[attr])
        need = {a: self.reductions[self.names[id(p)]] for a, p in formed.items() if a not in full}
        if need:
            for attr, value in rule.reduce(mod, inp, g, kept, need).items():
                self.consume(self.names[id(formed[attr])], value)


def _plan(model, names: dict[int, str]):
    """(path, module, rule) of every layer that holds a scoped parameter, and how many layers form each one
    (tied parameters: more than one); an InputError when a scoped parameter's layer has no rule (Sec. 3.2)."""
    plan, users = [], defaultdict(int)
    for mname, mod in model.named_modules():
        held = {n: p for n, p in mod.named_parameters(recurse=False) if id(p) in names}
        if not held:
            continue
        rule = rule_for(mod, mname, names[id(next(iter(held.values())))])
        unformed = sorted(set(held) - set(rule.params(mod)))
        if unformed:
            raise InputError(f"no per-sample gradient rule for parameter(s) {[names[id(held[n])] for n in unformed][:3]}"
                             f" of {type(mod).__name__} module {mname!r} ({type(rule).__name__} forms only "
                             f"{', '.join(rule.params(mod))})")
        plan.append((mname, mod, rule))
        for p in rule.forms(mod).values():
            if id(p) in names:
                users[id(p)] += 1
    return plan, users


# ----------------------------------------------------------------------------- Eq. 9 and Eq. 11
@contextlib.contextmanager
def only_requires_grad(model, params):
    """Parameters outside the scope stop requiring grad, so autograd records only what lies downstream
    of the scoped layers (for lm_head.dense the trunk runs as cheaply as a no-grad forward)."""
    keep = {id(p) for p in params.values()}
    before = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    try:
        yield
    finally:
        for p in model.parameters():
            p.requires_grad_(before[id(p)])
