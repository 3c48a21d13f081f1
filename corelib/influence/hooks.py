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
    """Hooks that hand each scoped parameter's per-sample gradient (B, *shape) to `consume(name, grad)` (Sec. 3.2).

    Each layer's gradients come from its rule in `rules.RULES` (Linear, LayerNorm, Embedding with padding_idx
    and fair-esm's learned positions, and LM heads that apply the tied embedding functionally or add an
    output bias). A scoped parameter no rule covers is an InputError, never a silent omission. Call
    `flush()` after backward to deliver the tied parameters.
    """

    def __init__(self, model, params: dict[str, nn.Parameter], consume):
        self.model, self.consume = model, consume
        self.names = {id(p): n for n, p in params.items()}
        self.handles, self.buffer, self.outputs, self.features = [], {}, [], {}
        self.batch_size = None
        plan, users = _plan(model, self.names)
        self.tied = {i for i, c in users.items() if c > 1}
        self.time_first = tuple(getattr(model, "time_first", ()))
        for mname, mod, rule in plan:
            self.handles.append(mod.register_forward_hook(self._forward_hook(mname, rule)))
            for key, sub in rule.kept(mod).items():
                self.handles.append(sub.register_forward_hook(self._keep_output(mod, key)))

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.features.clear()  # the kept LM-head inputs hold a graph
        self.outputs.clear()
        return False

    def _deliver(self, param, grad):
        key = id(param)
        if key not in self.names:
            return
        grad = grad.float()
        if key in self.tied:
            self.buffer[key] = self.buffer[key] + grad if key in self.buffer else grad
        else:
            self.consume(self.names[key], grad)

    def flush(self):
        """Deliver the summed per-sample gradients of tied parameters (call after backward; Sec. 3.2)."""
        for key, grad in self.buffer.items():
            self.consume(self.names[key], grad)
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

    def _forward_hook(self, mname, rule):
        def hook(module, inputs, output):
            if not torch.is_grad_enabled() or not output.requires_grad:
                return
            inp = inputs[0]
            kept = {key: self.features.get((id(module), key)) for key in rule.kept(module)}

            # The model gets a clone; the clone's hook receives dL/d(output) even if the model later
            # modifies it in place (fair-esm scales q_proj's output in place), and autograd.grad
            # targets the untouched original, so the backward always passes through the clone.
            out = output.clone()

            def on_grad(g):
                self._per_sample(mname, module, rule, inp, g, kept)

            out.register_hook(on_grad)
            self.outputs.append(output)
            return out
        return hook

    @torch.no_grad()
    def _per_sample(self, mname, mod, rule, inp, g, kept):
        layout = self._batch_first
        grads = rule.per_sample(mod, layout(mname, inp), layout(mname, g),
                                {k: layout(mname, v) for k, v in kept.items()})
        for attr, grad in grads.items():
            self._deliver(getattr(mod, attr), grad)


def _plan(model, names: dict[int, str]):
    """(path, module, rule) of every layer that holds a scoped parameter, and how many layers use each one
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
        for p in held.values():
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
