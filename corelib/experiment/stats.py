"""Paired comparisons of ratio-of-sums metrics over test items and seeds, and Holm's step-down correction.

A task's primary metric at one seed is a ratio of sums over its test items, M = sum(num) / sum(den) (accuracy:
correct / items; a loss: summed CE / masked tokens). Two arms compared at seed s share the seed's everything
except the selection, and are scored on the same items, so the comparison is the paired difference
d_s = sign * (M_A,s - M_B,s) (sign -1 where lower is better: a positive d always favours A), and the estimate
is the mean over seeds, D = mean_s d_s. Items are the union of the seeds' test items; an item a seed did not
score has num = den = 0 there, so seeds that drew other test items stay paired on the ones they share.

Its uncertainty has three parts: d_s = mu + a + b_s + e_s, where a comes from which items were drawn and is the
same at every seed (an arm's persistent preference for some items), b_s is the run-to-run variation between the
arms at seed s, and e_s is the item noise of that seed's runs. Var(D) = V_a + (V_b + V_e) / S.

`method="t"` (the verdicts' method): V_b + V_e from the spread of the d_s over the S seeds (s^2 / S); V_a from a
paired item bootstrap (the same resampled items for both arms and every seed, the ratio-of-sums metrics
recomputed on them): the bootstrap variance of D minus its seed-level part V_e / S (V_e estimated from the
bootstrap spread of d_s - D), floored at 0; V = s^2 / S + V_a. The interval is D +- t(S - 1) * sqrt(V) and the
p-value the matching two-sided t tail. S - 1 degrees of freedom, not Satterthwaite's: with 3 seeds s^2 is often
small by chance, Satterthwaite's df then grows exactly when V is underestimated, and the null calibration
(`corelib.experiment.calibration`) rejected 2% instead of 1% at p < 0.01; t(S - 1) is exact when the seeds
dominate and conservative when the items do.

`method="bootstrap"`: the two-level percentile bootstrap (seeds with replacement, items with replacement,
paired), kept to show why it is not used: with 3 seeds a resample of seeds has 10 distinct values, its tails
hold the extreme seed and its intervals are too narrow whenever seeds vary (the calibration measures it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05         # two-sided level of every interval and test
POWER = 0.80         # the power at which a comparison's minimum detectable effect is stated
REPLICATES = 2000    # bootstrap replicates
BOOT_SEEDS = 20251   # the seed-bootstrap weights of a comparison run at fewer seeds than the grid
METHODS = ("t", "bootstrap")


def boot_counts(n: int, replicates: int = REPLICATES, rng=None) -> np.ndarray:
    """Bootstrap weights of n units (test items, or seeds): how often each is drawn in each replicate,
    [replicates, n] (Efron)."""
    rng = np.random.default_rng(rng)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


@dataclass(frozen=True)
class Resampled:
    """One arm's ratio-of-sums metric per seed ([..., S]) and on each item-bootstrap replicate ([..., S, B])."""

    point: np.ndarray
    boot: np.ndarray
    items: int


def resample(num, den, weights: np.ndarray) -> Resampled:
    """Ratio-of-sums sum(num) / sum(den) over the items (last axis) per seed, and recomputed on every
    replicate of `weights` ([B, n] item counts): the paired item bootstrap when arms share `weights`."""
    num = np.asarray(num, dtype=np.float64)
    den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = num.sum(-1) / den.sum(-1)
        boot = (num @ weights.T) / (den @ weights.T)
    return Resampled(point, boot, num.shape[-1])


@dataclass(frozen=True)
class Estimate:
    """A paired difference: mean over seeds, per-seed values, and what its interval and p-value need."""

    mean: np.ndarray        # [...]
    per_seed: np.ndarray    # [..., S]
    se: np.ndarray          # t: standard error of the mean (NaN with one seed)
    df: np.ndarray          # t: Satterthwaite degrees of freedom
    boot: np.ndarray | None = None   # bootstrap: the replicates of the mean, [..., B]
    method: str = "t"

    def pvalue(self) -> np.ndarray:
        """Two-sided p-value of 'no difference': the t tail, or the bootstrap's two tails (+1 corrected)."""
        if self.method == "bootstrap":
            b = self.boot.shape[-1]
            low = ((self.boot <= 0).sum(-1) + 1) / (b + 1)
            high = ((self.boot >= 0).sum(-1) + 1) / (b + 1)
            return np.minimum(1.0, 2 * np.minimum(low, high))
        with np.errstate(invalid="ignore", divide="ignore"):
            p = 2 * stats.t.sf(np.abs(self.mean) / self.se, self.df)
        exact = self.se == 0     # no variation at all: a difference is certain, none is none
        return np.where(exact, np.where(self.mean == 0, 1.0, 0.0), p)

    def mde(self, alpha=ALPHA, power: float = POWER) -> np.ndarray:
        """The minimum detectable effect: the true difference a two-sided t test at level `alpha` would detect
        with probability `power` given this estimate's standard error, (t_{1-alpha/2} + t_{power}) x SE with the
        estimate's degrees of freedom (NaN with one seed or by the bootstrap method)."""
        alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), np.shape(self.mean))
        with np.errstate(invalid="ignore"):
            return (stats.t.ppf(1 - alpha / 2, self.df) + stats.t.ppf(power, self.df)) * self.se

    def interval(self, alpha=ALPHA) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided (1 - alpha) interval; `alpha` may differ per element (Holm's levels)."""
        alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), np.shape(self.mean))
        if self.method == "bootstrap":
            srt = np.sort(self.boot, axis=-1)
            b = srt.shape[-1]
            lo_k = np.clip(np.floor(alpha / 2 * (b - 1)).astype(int), 0, b - 1)
            hi_k = np.clip(np.ceil((1 - alpha / 2) * (b - 1)).astype(int), 0, b - 1)
            return (np.take_along_axis(srt, lo_k[..., None], -1)[..., 0],
                    np.take_along_axis(srt, hi_k[..., None], -1)[..., 0])
        half = stats.t.ppf(1 - alpha / 2, self.df) * self.se
        half = np.where(self.se == 0, 0.0, half)
        return self.mean - half, self.mean + half


def paired(a: Resampled, b: Resampled | float, sign: float = 1.0, method: str = "t",
           counts: np.ndarray | None = None) -> Estimate:
    """The paired difference sign * (A - B) per seed and its mean over seeds, with the uncertainty of `method`
    (module docstring); `b` may be a constant (a one-arm interval, or a loss against an entropy). The
    bootstrap method needs `counts`, the seed-resampling weights [B, S] (`boot_counts`). Only the seeds both arms
    were run at are paired."""
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; known: {', '.join(METHODS)}")
    if isinstance(b, Resampled):
        b_point, b_boot = b.point, b.boot
    else:   # a constant, one per grid: broadcast over seeds (and replicates)
        b_point = np.asarray(b, dtype=np.float64)[..., None]
        b_boot = b_point[..., None]
    d = sign * (a.point - b_point)          # [..., S]
    dstar = sign * (a.boot - b_boot)        # [..., S, B]
    both = np.isfinite(d).reshape(-1, d.shape[-1]).all(0)   # the seeds both arms were run at
    if not both.all():
        d, dstar = d[..., both], dstar[..., both, :]
        if counts is not None:
            counts = boot_counts(int(both.sum()), counts.shape[0], np.random.default_rng(BOOT_SEEDS))
    n_seeds = d.shape[-1]
    mean = d.mean(-1)
    if method == "bootstrap":
        boot = np.einsum("...sb,bs->...b", dstar, counts) / n_seeds
        nan = np.full(np.shape(mean), np.nan)
        return Estimate(mean, d, nan, nan, boot, "bootstrap")
    if n_seeds < 2:
        nan = np.full(np.shape(mean), np.nan)
        return Estimate(mean, d, nan, nan)
    v_seed = d.var(-1, ddof=1) / n_seeds
    df = np.full(np.shape(mean), float(n_seeds - 1))
    dbar = dstar.mean(-2)                                                     # [..., B]
    v_items = np.nanvar(dbar, -1, ddof=1)
    v_noise = np.nanvar(dstar - dbar[..., None, :], -1, ddof=1).mean(-1) * n_seeds / (n_seeds - 1)
    v_a = np.maximum(0.0, v_items - v_noise / n_seeds)
    return Estimate(mean, d, np.sqrt(v_seed + v_a), df)


def holm(p, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjusted p-values over the last axis (NaN: not in the family) and the level of each
    hypothesis's compatible interval: alpha / (m - k + 1) for the k-th smallest p when rejected, alpha /
    (m - r) for the rest (r rejected), so an interval excludes 0 exactly when Holm rejects (Holm 1979;
    Strassburger & Bretz 2008)."""
    p = np.asarray(p, dtype=np.float64)
    valid = ~np.isnan(p)
    order = np.argsort(np.where(valid, p, np.inf), axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, -1)
    m = valid.sum(-1, keepdims=True)
    rank = np.arange(p.shape[-1])
    adj = np.maximum.accumulate(np.minimum(1.0, (m - rank) * ps), axis=-1)
    adj = np.where(rank < m, adj, np.nan)
    rejected = adj <= alpha
    r = rejected.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(rejected, alpha / (m - rank), alpha / np.maximum(m - r, 1))
    level = np.where(rank < m, level, np.nan)
    out_adj, out_level = np.empty_like(adj), np.empty_like(level)
    np.put_along_axis(out_adj, order, adj, -1)
    np.put_along_axis(out_level, order, level, -1)
    return out_adj, out_level
