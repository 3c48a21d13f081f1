"""Per-sample gradients from layer hooks, the diagonal empirical Fisher (Eq. 9) and self-influence (Eq. 11).

Per-sample gradients are formed layer by layer, as kronfluence and opacus do: a forward hook keeps each
layer's input, a gradient hook on its output receives dL/d(output), and the per-sample weight gradient
of a Linear layer is the outer product summed over positions, einsum('bto,bti->boi'). Each layer's
contribution is reduced (squared, weighted) as soon as it is formed, so no full-model gradient per
sample is ever held. Weights used twice (the embedding tied to the LM head) are summed per sample
before squaring.

Sign convention (stated once, used everywhere): a score is I(z) = g^T diag(F)^-1 g >= 0, higher = more
influential. The official code stores -I; `compat="bio-coreset"` reproduces that.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

SCOPES = ("all", "linear", "lm_head.dense", "last:N")


# ----------------------------------------------------------------------------- loss and scope
def per_sequence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MLM cross-entropy of each sequence, averaged over its predicted positions (labels != -100):
    pad, <cls> and <eos> never count, so a sequence's loss does not depend on its batch."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return ce.sum(1) / (labels != -100).sum(1).clamp(min=1)


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
    """Hooks that hand each scoped parameter's per-sample gradient (B, *shape) to `consume(name, grad)`.

    Supported layers: Linear, LayerNorm, Embedding (with padding_idx, and fair-esm's learned positions),
    and LM heads that apply the tied embedding functionally (fair-esm RobertaLMHead, HF EsmLMHead bias).
    A scoped parameter none of them covers is an InputError, never a silent omission. Call `flush()`
    after backward to deliver the tied parameters.
    """

    def __init__(self, model, params: dict[str, nn.Parameter], consume):
        self.model, self.consume = model, consume
        self.names = {id(p): n for n, p in params.items()}
        self.handles, self.buffer, self.outputs, self.features = [], {}, [], {}
        self.batch_size = None
        users = defaultdict(int)
        plan = []
        for mname, mod in model.named_modules():
            owned = [p for p in self._params_of(mod) if id(p) in self.names]
            if owned:
                plan.append((mname, mod))
                for p in owned:
                    users[id(p)] += 1
        missing = set(self.names) - set(users)
        if missing:
            raise InputError(f"no per-sample gradient rule for parameter(s) "
                             f"{sorted(self.names[i] for i in missing)[:3]}")
        self.tied = {i for i, c in users.items() if c > 1}
        self.time_first = tuple(getattr(model, "time_first", ()))
        for mname, mod in plan:
            self.handles.append(mod.register_forward_hook(self._forward_hook(mname)))
            if _is_lm_head(mod) and not hasattr(mod, "decoder"):
                self.handles.append(mod.layer_norm.register_forward_hook(self._keep_output(mod)))

    @staticmethod
    def _params_of(mod):
        if isinstance(mod, nn.Linear):
            return [p for p in (mod.weight, mod.bias) if p is not None]
        if isinstance(mod, nn.LayerNorm):
            return [p for p in (mod.weight, mod.bias) if p is not None]
        if isinstance(mod, nn.Embedding):
            return [mod.weight]
        if _is_lm_head(mod):
            own = [mod.bias]
            if not hasattr(mod, "decoder"):
                own.append(mod.weight)
            return own
        return []

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
        """Deliver the summed per-sample gradients of tied parameters (call after backward)."""
        for key, grad in self.buffer.items():
            self.consume(self.names[key], grad)
        self.buffer = {}

    def _batch_first(self, mname: str, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) view of an activation, whatever the layer's layout."""
        if x.ndim == 3 and mname.startswith(self.time_first):
            x = x.transpose(0, 1)
        if x.ndim == 2:
            x = x.unsqueeze(1)
        if self.batch_size is not None and x.shape[0] != self.batch_size:
            raise RuntimeError(f"layer {mname}: batch axis {x.shape[0]} != batch size {self.batch_size}")
        return x

    def _keep_output(self, head):
        def hook(mod, inputs, output):
            self.features[id(head)] = output
        return hook

    def _forward_hook(self, mname):
        def hook(module, inputs, output):
            if not torch.is_grad_enabled() or not output.requires_grad:
                return
            inp = inputs[0]
            features = self.features.get(id(module))

            # The model gets a clone; the clone's hook receives dL/d(output) even if the model later
            # modifies it in place (fair-esm scales q_proj's output in place), and autograd.grad
            # targets the untouched original, so the backward always passes through the clone.
            out = output.clone()

            def on_grad(g):
                self._per_sample(mname, module, inp, g, features)

            out.register_hook(on_grad)
            self.outputs.append(output)
            return out
        return hook

    @torch.no_grad()
    def _per_sample(self, mname, mod, inp, g, features):
        if isinstance(mod, nn.Linear):
            a, go = self._batch_first(mname, inp).float(), self._batch_first(mname, g).float()
            self._deliver(mod.weight, torch.einsum("bto,bti->boi", go, a))
            if mod.bias is not None:
                self._deliver(mod.bias, go.sum(1))
        elif isinstance(mod, nn.LayerNorm):
            x, go = self._batch_first(mname, inp).float(), self._batch_first(mname, g).float()
            xhat = F.layer_norm(x, mod.normalized_shape, eps=mod.eps)
            if mod.weight is not None:
                self._deliver(mod.weight, (go * xhat).sum(1))
            if mod.bias is not None:
                self._deliver(mod.bias, go.sum(1))
        elif isinstance(mod, nn.Embedding):
            idx = inp
            if type(mod).__name__ == "LearnedPositionalEmbedding":  # fair-esm: positions from the pad mask
                mask = inp.ne(mod.padding_idx).int()
                idx = (torch.cumsum(mask, dim=1) * mask).long() + mod.padding_idx
            go = g.float()
            grad = torch.zeros(go.shape[0], mod.num_embeddings, go.shape[-1], device=go.device)
            grad.scatter_add_(1, idx.unsqueeze(-1).expand(-1, -1, go.shape[-1]), go)
            if mod.padding_idx is not None:
                grad[:, mod.padding_idx] = 0
            self._deliver(mod.weight, grad)
        elif _is_lm_head(mod):
            go = g.float()
            self._deliver(mod.bias, go.sum(1))
            if not hasattr(mod, "decoder"):
                self._deliver(mod.weight, torch.einsum("btv,btd->bvd", go, features.float()))


def _is_lm_head(mod) -> bool:
    return type(mod).__name__ in ("RobertaLMHead", "EsmLMHead")


# ----------------------------------------------------------------------------- Eq. 9 and Eq. 11
@contextlib.contextmanager
def _only_requires_grad(model, params):
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


def _run(model, batches, params, consume, device, progress=None):
    """Forward + backward of sum_b loss_b over batches with the hooks on; yields (indices, losses)."""
    model.eval()
    with _only_requires_grad(model, params), PerSampleGradients(model, params, consume) as psg:
        for inputs, labels, idx in batches:
            inputs, labels = inputs.to(device), labels.to(device)
            psg.batch_size = inputs.shape[0]
            with torch.enable_grad():
                losses = per_sequence_loss(model(inputs), labels)
                # gradients w.r.t. the hooked layer outputs only: the hooks form the per-sample weight
                # gradients, so autograd's batch-summed weight gradients are never computed
                torch.autograd.grad(losses.sum(), psg.outputs, allow_unused=True)
            psg.outputs.clear()
            psg.flush()
            if progress is not None:
                progress.update(inputs.shape[0])
            yield idx, losses.detach()


def diagonal_fisher(model, batches, scope: str = "all", device="cpu", progress=None,
                    allow_empty: bool = False) -> tuple[dict, int]:
    """diag(F) = (1/M) sum_m g_m (.) g_m over D_sub (Eq. 9); accumulated in float64, returned in float32.

    Returns ({parameter name: tensor}, M). Also usable as a sum (multiply by M) for all-reduce.
    """
    params = scope_params(model, scope)
    acc = {n: torch.zeros(p.shape, dtype=torch.float64, device=device) for n, p in params.items()}

    def consume(name, grad):
        acc[name] += grad.double().square().sum(0)

    count = 0
    for idx, _ in _run(model, batches, params, consume, device, progress):
        count += len(idx)
    if count == 0:
        if allow_empty:  # a rank with no batch contributes zeros to the all-reduce
            return {n: a.float() for n, a in acc.items()}, 0
        raise InputError("the Fisher subset D_sub is empty")
    return {n: (a / count).float() for n, a in acc.items()}, count


def resolve_damping(fisher: dict, damping) -> float:
    """lambda added to diag(F) before inversion (Eq. 10): a number, or 'auto' = 0.1 x mean diag(F)
    (the heuristic kronfluence uses), which keeps never-seen directions from dominating Eq. 11."""
    if damping == "auto":
        total = sum(float(f.double().sum()) for f in fisher.values())
        size = sum(f.numel() for f in fisher.values())
        return 0.1 * total / size
    value = float(damping)
    if not value > 0:
        raise InputError(f"damping must be positive or 'auto', got {damping!r}")
    return value


def self_influence(model, batches, fisher: dict, damping=1e-8, scope: str = "all", device="cpu",
                   progress=None, groups: bool = True):
    """I(z) = g_z^T (diag(F) + lambda)^-1 g_z for each sequence (Eq. 11, higher = more influential).

    Yields per batch (indices, scores (B,), losses (B,), {group: (B,) contribution}) as float64 numpy.
    """
    params = scope_params(model, scope)
    if set(params) != set(fisher):
        raise InputError("the Fisher file was computed over a different parameter scope or model")
    lam = resolve_damping(fisher, damping)
    inv = {n: 1.0 / (f.to(device).float() + lam) for n, f in fisher.items()}
    group_of = {n: param_group(n) for n in params}
    current: dict[str, torch.Tensor] = {}

    def consume(name, grad):
        contrib = (grad.square() * inv[name]).flatten(1).sum(1).double()
        key = group_of[name]
        current[key] = current[key] + contrib if key in current else contrib

    for idx, losses in _run(model, batches, params, consume, device, progress):
        per_group = {k: v.cpu().numpy() for k, v in sorted(current.items())}
        current.clear()
        total = np.sum(list(per_group.values()), axis=0)
        yield idx, total, losses.double().cpu().numpy(), (per_group if groups else {})


def per_sample_gradient_matrix(model, batches, scope: str = "all", names=None, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Per-sample gradients as a dense (N, d) float64 matrix over a small parameter block (`names`, or a
    scope), with the pool indices of its rows: for exact full-Fisher checks (notebook 01, Eqs. 8-10)."""
    params = scope_params(model, scope)
    if names is not None:
        missing = sorted(set(names) - set(params))
        if missing:
            raise InputError(f"unknown parameter(s) {missing[:3]}")
        params = {n: params[n] for n in names}
    order = list(params)
    current: dict[str, torch.Tensor] = {}

    def consume(name, grad):
        current[name] = grad.flatten(1).double()

    rows, index = [], []
    for idx, _ in _run(model, batches, params, consume, device):
        rows.append(torch.cat([current[n] for n in order], dim=1).cpu().numpy())
        index.append(np.asarray(idx))
        current.clear()
    return np.concatenate(rows), np.concatenate(index)
