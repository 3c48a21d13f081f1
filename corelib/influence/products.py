"""What Eq. 9 and Eq. 11 take of the per-sample gradients g_b, formed without the parameter-sized tensors
they do not need (Section 3.2).

Eq. 9 needs sum_b g_b (.) g_b and Eq. 11 needs sum_j w_j g_bj^2 with w = (diag F + lambda)^-1; neither
needs g_b itself once it is reduced. A layer rule (rules.py) hands its per-sample gradients, or for a
Linear layer its inputs a and output gradients d, to a `Reduction`:

- `SquaredSum` (Eq. 9) and `WeightedNorm` (Eq. 11) reduce a (B, *shape) per-sample gradient;
- for nn.Linear, g_b = sum_t d_bt a_bt^T is formed as one batched GEMM (`outer_sum`), squared in place and
  reduced (one (B, out, in) float32 buffer per layer, no further copies); the batch is taken in slices
  whose buffer stays within BUFFER_ELEMENTS (64 MB), so a token-budget batch of many short sequences does not
  grow it;
- Eq. 11 with a rank-one weight w_oi = u_o v_i (the plain squared norm: w = 1) factorises as
  sum_{t,s} (d_t diag(u) d_s^T)(a_t diag(v) a_s^T), T x T Gram products per sequence ("ghost norm"), which is
  cheaper than forming g_b when T (out + in) < out x in (`ghost_is_cheaper`). The diagonal Fisher's inverse
  is not rank-one in general (it is elementwise 1 / (F_oi + lambda)), so Eq. 11 runs the GEMM path unless the
  weight is exactly rank-one; `rank_one` checks.

Products are accumulated in float32; operands in bf16 (a bf16 autocast forward) are multiplied in bf16 with
float32 accumulation on CUDA (`torch.bmm(..., out_dtype=float32)`) and upcast to float32 elsewhere.
"""
from __future__ import annotations

import torch

BUFFER_ELEMENTS = 1 << 24   # float32 entries of one slice's (b, out, in) per-sample products


_OUT_DTYPE: dict[str, bool] = {}


def _bf16_gemm_ok(x: torch.Tensor) -> bool:
    """True where a bf16/fp16 batched GEMM can write float32 (`out_dtype`, CUDA), checked once per device."""
    if not x.is_cuda or x.dtype not in (torch.bfloat16, torch.float16):
        return False
    key = f"{x.device}:{x.dtype}"
    if key not in _OUT_DTYPE:
        try:
            one = torch.ones(1, 1, 1, device=x.device, dtype=x.dtype)
            _OUT_DTYPE[key] = torch.bmm(one, one, out_dtype=torch.float32).dtype == torch.float32
        except (RuntimeError, TypeError):   # a build without it: upcast instead
            _OUT_DTYPE[key] = False
    return _OUT_DTYPE[key]


def outer_sum(d: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Per-sample sum_t d_bt a_bt^T, (B, out, in) float32, as one batched GEMM (Sec. 3.2): d (B, T, out),
    a (B, T, in), any strides (the time-first layers' transposed views are read in place)."""
    if d.dtype != a.dtype:   # autocast: the layer ran in the lower precision, so multiply in it
        low = d.dtype if d.dtype in (torch.bfloat16, torch.float16) else a.dtype
        d, a = d.to(low), a.to(low)
    if _bf16_gemm_ok(d):
        return torch.bmm(d.transpose(1, 2), a, out_dtype=torch.float32)
    if d.dtype != torch.float32:
        d, a = d.float(), a.float()
    return torch.bmm(d.transpose(1, 2), a)


def ghost_is_cheaper(tokens: int, out_features: int, in_features: int) -> bool:
    """FLOP estimate per sequence: T x T Gram products, 2 T^2 (out + in), against forming g_b, 2 T out in."""
    return tokens * (out_features + in_features) < out_features * in_features


def rank_one(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(u, v) with w = u v^T exactly (to float32 rounding), or None; w (out, in) positive (Sec. 3.2)."""
    if w.ndim != 2 or not bool((w > 0).all()):
        return None
    u, v = w[:, 0], w[0, :] / w[0, 0]
    return (u, v) if torch.allclose(torch.outer(u, v), w, rtol=1e-6, atol=0.0) else None


class Reduction:
    """What a consumer takes of one parameter's per-sample gradients (Eq. 9 or Eq. 11)."""

    def gradients(self, g: torch.Tensor) -> torch.Tensor:
        """The reduction of per-sample gradients g (B, *shape); g is the caller's and may be overwritten."""
        raise NotImplementedError

    def linear(self, d: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The reduction of a Linear weight's g_b = sum_t d_bt a_bt^T from d (B, T, out) and a (B, T, in), formed
        in batch slices of at most BUFFER_ELEMENTS products."""
        step = max(1, BUFFER_ELEMENTS // (d.shape[2] * a.shape[2]))
        if step >= d.shape[0]:
            return self.gradients(outer_sum(d, a))
        return self.combine([self.gradients(outer_sum(d[i:i + step], a[i:i + step]))
                             for i in range(0, d.shape[0], step)])

    def combine(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The reduction of a whole batch from those of its slices."""
        raise NotImplementedError


class SquaredSum(Reduction):
    """Eq. 9's sum over the batch: sum_b g_b (.) g_b, float64, of the parameter's shape."""

    def gradients(self, g):
        """Squared in place (float32), summed over the batch, returned in float64 (Eq. 9)."""
        g = g.float() if g.dtype != torch.float32 else g
        return g.square_().sum(0).double()

    def combine(self, parts):
        """Sums over slices add (Eq. 9)."""
        return torch.stack(parts).sum(0)


class WeightedNorm(Reduction):
    """Eq. 11's contribution of one parameter: sum_j w_j g_bj^2 per sample, (B,) float64."""

    def __init__(self, weight: torch.Tensor):
        self.weight = weight.float()
        self.factors = rank_one(self.weight) if self.weight.ndim == 2 else None

    def gradients(self, g):
        """Squared and weighted in place (float32), summed per sample, returned in float64 (Eq. 11)."""
        g = g.float() if g.dtype != torch.float32 else g
        return g.square_().mul_(self.weight).flatten(1).sum(1).double()

    def linear(self, d, a):
        """The GEMM path, or T x T Gram products when the weight is rank-one and that is cheaper (Eq. 11)."""
        if self.factors is not None and ghost_is_cheaper(d.shape[1], d.shape[2], a.shape[2]):
            u, v = self.factors
            d, a = d.float(), a.float()
            gd = torch.bmm(d * u, d.transpose(1, 2))
            ga = torch.bmm(a * v, a.transpose(1, 2))
            return gd.mul_(ga).flatten(1).sum(1).double()
        return super().linear(d, a)

    def combine(self, parts):
        """Per-sample values of consecutive slices, concatenated (Eq. 11)."""
        return torch.cat(parts)
