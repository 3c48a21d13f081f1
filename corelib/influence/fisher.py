"""The diagonal empirical Fisher (Eq. 9) and self-influence g^T diag(F)^-1 g (Eq. 11) over batches.

Derived step by step in notebook 02 ("Eq. 9 and Eq. 11 by hand").
"""
from __future__ import annotations

import numpy as np
import torch

from corelib.errors import InputError
from corelib.influence.hooks import (
    PerSampleGradients,
    only_requires_grad,
    param_group,
    scope_params,
)
from corelib.influence.products import SquaredSum, WeightedNorm
from corelib.models.loss import per_sequence_loss
from corelib.runtime import autocast


def _run(model, batches, params, consume, device, progress=None, precision: str = "fp32", reduction: str = "mean",
         reductions: dict | None = None):
    """Forward + backward of sum_b loss_b over batches with the hooks on; yields (indices, losses). The
    forward runs in `precision`; the hooks' per-sample products are accumulated in fp32 (`products`).
    `reductions`: what `consume` receives of each parameter's per-sample gradients (None: the gradients)."""
    model.eval()
    with only_requires_grad(model, params), PerSampleGradients(model, params, consume, reductions) as psg:
        for inputs, labels, idx in batches:
            inputs, labels = inputs.to(device), labels.to(device)
            with torch.enable_grad():
                while True:   # a layer output the model modifies in place is learned once, then cloned
                    psg.begin_batch(inputs.shape[0])
                    with autocast(device, precision):
                        logits = model(inputs)
                    if not psg.modified_in_place():
                        break
                losses = per_sequence_loss(logits, labels, reduction)
                # gradients w.r.t. the hooked layer outputs only: the hooks form the per-sample weight
                # gradients, so autograd's batch-summed weight gradients are never computed
                torch.autograd.grad(losses.sum(), psg.outputs, allow_unused=True)
            psg.begin_batch()
            psg.flush()
            if progress is not None:
                progress.update(inputs.shape[0])
            yield idx, losses.detach()


def diagonal_fisher(model, batches, scope: str = "all", device="cpu", progress=None,
                    allow_empty: bool = False, precision: str = "fp32", reduction: str = "mean") -> tuple[dict, int]:
    """diag(F) = (1/M) sum_m g_m (.) g_m over D_sub (Eq. 9); accumulated in float64, returned in float32.

    Returns ({parameter name: tensor}, M). Also usable as a sum (multiply by M) for all-reduce.
    """
    params = scope_params(model, scope)
    acc = {n: torch.zeros(p.shape, dtype=torch.float64, device=device) for n, p in params.items()}

    def consume(name, squares):
        acc[name] += squares

    count = 0
    squared = {n: SquaredSum() for n in params}
    for idx, _ in _run(model, batches, params, consume, device, progress, precision, reduction, squared):
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
                   progress=None, groups: bool = True, precision: str = "fp32", reduction: str = "mean"):
    """I(z) = g_z^T (diag(F) + lambda)^-1 g_z for each sequence (Eq. 11, higher = more influential).

    Yields per batch (indices, scores (B,), losses (B,), {group: (B,) contribution}) as float64 numpy.
    """
    params = scope_params(model, scope)
    if set(params) != set(fisher):
        raise InputError("the Fisher file was computed over a different parameter scope or model")
    lam = resolve_damping(fisher, damping)
    weighted = {n: WeightedNorm(1.0 / (f.to(device).float() + lam)) for n, f in fisher.items()}
    group_of = {n: param_group(n) for n in params}
    current: dict[str, torch.Tensor] = {}

    def consume(name, contrib):
        key = group_of[name]
        current[key] = current[key] + contrib if key in current else contrib

    for idx, losses in _run(model, batches, params, consume, device, progress, precision, reduction, weighted):
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
        # a parameter no layer used in this forward (fair-esm's contact head) has a zero gradient, as in Eq. 9
        rows.append(torch.cat([current[n] if n in current else torch.zeros(len(idx), params[n].numel(),
                                                                          dtype=torch.float64, device=device)
                               for n in order], dim=1).cpu().numpy())
        index.append(np.asarray(idx))
        current.clear()
    return np.concatenate(rows), np.concatenate(index)
