"""Coreset selection on a 1-D score array (Section 3.3, Algorithm 1). numpy only: no torch needed.

Convention: a score is the self-influence of Eq. 11, higher = more influential ("harder").
Algorithm 1 is worked step by step in notebook 03.
"""
from __future__ import annotations

import math

import numpy as np


def as_scores(scores) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"scores must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("scores are empty")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"scores contain {bad.size} NaN/Inf value(s), first at index {bad[0]}")
    return arr


def resolve_budget(n: int, budget) -> int:
    """A count, or a pruning rate alpha in (0, 1) -> floor(n * (1 - alpha)) (Algorithm 1, line 4)."""
    if isinstance(budget, (bool, np.bool_)):
        raise ValueError(f"budget must be a count or a pruning rate, got {budget!r}")
    if isinstance(budget, (float, np.floating)) and not float(budget).is_integer():
        if not 0 < budget < 1:
            raise ValueError(f"a fractional budget is a pruning rate alpha and must lie in (0, 1), got {budget}")
        budget = math.floor(n * (1 - budget) + 1e-9)
    budget = int(budget)
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    if budget > n:
        raise ValueError(f"budget {budget} is larger than the pool ({n} examples)")
    return budget


def _sorted(idx) -> np.ndarray:
    return np.sort(np.asarray(idx, dtype=np.int64))


def random(n: int, budget, seed: int = 0) -> np.ndarray:
    """Uniform random subset of size budget (the Random baseline, Section 4.1)."""
    if int(n) <= 0:
        raise ValueError("the pool is empty")
    budget = resolve_budget(int(n), budget)
    return _sorted(np.random.default_rng(seed).choice(int(n), size=budget, replace=False))


def _rank_desc(scores: np.ndarray) -> np.ndarray:
    """Indices from highest to lowest score; ties broken by lower pool index first (a stable sort of -score)."""
    return np.argsort(-scores, kind="stable")


def top_k(scores, budget) -> np.ndarray:
    """The budget highest self-influence examples (Top I, Section 3.3); ties go to the lower index."""
    s = as_scores(scores)
    return _sorted(_rank_desc(s)[: resolve_budget(s.size, budget)])


def bottom_k(scores, budget) -> np.ndarray:
    """The budget lowest self-influence examples (the easiest); ties go to the lower index."""
    s = as_scores(scores)
    order = np.lexsort((np.arange(s.size), s))
    return _sorted(order[: resolve_budget(s.size, budget)])


def stratum_of(scores, strata: int, binning: str = "width") -> np.ndarray:
    """Stratum id (0 = lowest scores) of each score: k equal-width ranges over [min, max] (Algorithm 1,
    line 2), half-open except the last, which is closed, so every example lies in exactly one stratum
    (negative, tied or all-equal scores included; all-equal scores form stratum 0). `binning="quantile"`
    uses equal-count edges instead.
    """
    s = np.asarray(scores, dtype=np.float64)
    if strata < 1:
        raise ValueError(f"strata must be >= 1, got {strata}")
    if binning == "width":
        lo, hi = s.min(), s.max()
        if hi == lo:
            return np.zeros(s.size, dtype=np.int64)
        edges = lo + (hi - lo) * np.arange(1, strata) / strata
    elif binning == "quantile":
        edges = np.quantile(s, np.arange(1, strata) / strata)
    else:
        raise ValueError(f"binning must be 'width' or 'quantile', got {binning!r}")
    return np.searchsorted(edges, s, side="right").astype(np.int64)


def after_cutoff(s: np.ndarray, hard_cutoff: float) -> np.ndarray:
    if not 0 <= hard_cutoff < 1:
        raise ValueError(f"hard_cutoff beta must lie in [0, 1), got {hard_cutoff}")
    cut = math.floor(s.size * hard_cutoff)
    return np.sort(_rank_desc(s)[cut:])  # drop the floor(n * beta) highest (ties: lower index dropped first)


def cci(scores, budget, hard_cutoff: float = 0.05, strata: int = 50, seed: int = 0,
        binning: str = "width") -> np.ndarray:
    """Coverage-centric Influence selection, Algorithm 1 (A.1).

    1. drop the floor(n * beta) highest-influence examples (ties: the lower index is dropped first);
    2. split the remaining score range into `strata` equal-width ranges (`stratum_of`);
    3. visit the non-empty strata from the smallest up (ties: lower score range first), giving each
       m_B = min(|B|, floor(m / strata left)) and sampling m_B uniformly inside it (numpy Generator seeded
       with `seed`, one draw per stratum in visiting order); m -= m_B.
    The remainder left by flooring is carried forward in m to the strata visited later (the larger
    ones), so exactly `budget` indices are returned whenever budget <= n - floor(n * beta); a larger
    budget is a ValueError. Empty strata receive nothing (visiting them first, as the pseudocode does,
    changes no allocation).
    """
    s = as_scores(scores)
    keep = after_cutoff(s, hard_cutoff)
    budget = resolve_budget(s.size, budget)
    if budget > keep.size:
        raise ValueError(f"budget {budget} exceeds the {keep.size} examples left after the hard cutoff "
                         f"(beta={hard_cutoff})")
    sid = stratum_of(s[keep], strata, binning)
    members = [keep[sid == b] for b in range(strata)]
    order = sorted((b for b in range(strata) if members[b].size), key=lambda b: (members[b].size, b))
    rng = np.random.default_rng(seed)
    picked, m = [], budget
    for left, b in zip(range(len(order), 0, -1), order):
        take = min(members[b].size, m // left)
        picked.append(rng.choice(members[b], size=take, replace=False))
        m -= take
    assert m == 0, "Algorithm 1 allocation invariant"
    return _sorted(np.concatenate(picked))


def cci_official(scores, budget, exclude_lowest_ratio: float = 0.1, strata: int = 50, seed: int = 42,
                 negated: bool = False) -> np.ndarray:
    """Compat: the selection of the paper's official code (bio-coreset), for reproducing its coresets.

    It works on *negated* scores (the official scorer stores -I), so its `exclude_lowest_ratio` (0.1 in
    its script, not the paper's beta = 5%) removes the most influential examples. Strata are
    [min + i*step, min + (i+1)*step) with step = (max * 1.0001 - min) / k. When the highest negated
    score is negative (always, for self-influence), max * 1.0001 < max, so the least influential
    remaining example(s) fall outside every stratum and can never be picked; when it is 0 the same
    happens. Budgets are allocated over all k strata (empty ones included) in ascending-count order
    (numpy's default argsort), and strata are then sampled in index order with the legacy global
    RandomState seeded `seed`. Pass `negated=True` if `scores` are already the official negated ones.
    Returns sorted indices; fewer than `budget` when the lost example(s) leave too few.
    """
    d = as_scores(scores)
    d = d if negated else -d
    budget = resolve_budget(d.size, budget)
    rs = np.random.RandomState(seed)
    idx = np.arange(d.size)
    if exclude_lowest_ratio > 0:
        keep = np.ones(d.size, dtype=bool)
        keep[np.argsort(d)[: int(d.size * exclude_lowest_ratio)]] = False
        d, idx = d[keep], idx[keep]
    lo, top = d.min(), d.max() * 1.0001
    step = (top - lo) / strata
    masks = [(d >= lo + i * step) & (d < lo + (i + 1) * step) for i in range(strata)]
    counts = np.array([m.sum() for m in masks])
    budgets = np.zeros(strata, dtype=int)
    remaining = budget
    for i, b in enumerate(np.argsort(counts)):
        budgets[b] = min(counts[b], remaining // (strata - i))
        remaining -= budgets[b]
    picked = [rs.choice(idx[masks[i]], size=budgets[i], replace=False)
              for i in range(strata) if budgets[i] > 0]
    return _sorted(np.concatenate(picked) if picked else [])


def loss_band(values, budget, lower: float = 0.1, upper: float = 0.9, seed: int = 0) -> np.ndarray:
    """Uniform sample among examples whose value (e.g. MLM loss or log-perplexity) lies between the
    `lower` and `upper` quantiles: drops both the trivially easy and the outlier-hard ends."""
    v = as_scores(values)
    if not 0 <= lower < upper <= 1:
        raise ValueError(f"need 0 <= lower < upper <= 1, got {lower}, {upper}")
    lo, hi = np.quantile(v, [lower, upper])
    inside = np.flatnonzero((v >= lo) & (v <= hi))
    budget = resolve_budget(v.size, budget)
    if budget > inside.size:
        raise ValueError(f"budget {budget} exceeds the {inside.size} examples inside the band")
    return _sorted(np.random.default_rng(seed).choice(inside, size=budget, replace=False))


def _proportional(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Largest-remainder allocation of budget proportional to sizes (ties to the lower group)."""
    quota = sizes * budget / sizes.sum()
    alloc = np.floor(quota).astype(int)
    rest = budget - alloc.sum()
    alloc[np.lexsort((np.arange(sizes.size), -(quota - alloc)))[:rest]] += 1
    return alloc


def length_stratified(lengths, budget, bins: int = 10, seed: int = 0) -> np.ndarray:
    """Random sampling that keeps the pool's length distribution: quantile length bins, proportional
    (largest-remainder) allocation, uniform sampling inside each bin."""
    ln = as_scores(lengths)
    budget = resolve_budget(ln.size, budget)
    sid = stratum_of(ln, bins, "quantile")
    groups = [np.flatnonzero(sid == b) for b in range(bins)]
    groups = [g for g in groups if g.size]
    alloc = _proportional(np.array([g.size for g in groups]), budget)
    rng = np.random.default_rng(seed)
    return _sorted(np.concatenate([rng.choice(g, size=a, replace=False) for g, a in zip(groups, alloc)]))


def cluster_capped(cluster_ids, budget, cap: int = 1, scores=None, seed: int = 0) -> np.ndarray:
    """At most `cap` picks per sequence cluster (e.g. MMseqs2 at a chosen identity, as UniRef/ESM data
    recipes sample clusters, not sequences). Rounds over clusters in a seeded random order take one
    member per cluster per round (inside a cluster: highest score first if `scores` are given, else
    random), until the budget is met; too small a cap for the budget is a ValueError."""
    cid = np.asarray(cluster_ids)
    if cid.ndim != 1 or cid.size == 0:
        raise ValueError("cluster_ids must be a non-empty 1-D array")
    budget = resolve_budget(cid.size, budget)
    rng = np.random.default_rng(seed)
    key = as_scores(scores) if scores is not None else rng.random(cid.size)
    _, inverse = np.unique(cid, return_inverse=True)
    cluster_order = rng.permutation(inverse.max() + 1)
    rank_in_cluster = np.empty(cid.size, dtype=np.int64)
    order = np.lexsort((np.arange(cid.size), -key, inverse))
    starts = np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1]
    for a, b in zip(starts, np.r_[starts[1:], order.size]):
        rank_in_cluster[order[a:b]] = np.arange(b - a)
    eligible = np.flatnonzero(rank_in_cluster < cap)
    if budget > eligible.size:
        raise ValueError(f"budget {budget} exceeds the {eligible.size} examples allowed by cap={cap} "
                         f"over {inverse.max() + 1} clusters")
    position = np.argsort(cluster_order)[inverse]
    picks = eligible[np.lexsort((position[eligible], rank_in_cluster[eligible]))]
    return _sorted(picks[:budget])


def length_matched(lengths, reference, bins=None, seed: int = 0) -> np.ndarray:
    """Random sequences with the same length histogram as a `reference` coreset (its pool positions):
    for each length bin, as many uniform draws among the pool's members of that bin as the reference has
    there. `bins`: histogram edges (default: 20 quantile bins of the pool's lengths). A control that asks
    whether a selector's gain is only its length profile (issue: score robustness)."""
    ln = as_scores(lengths)
    ref = np.unique(np.asarray(reference, dtype=np.int64))
    if ref.size == 0 or ref.min() < 0 or ref.max() >= ln.size:
        raise ValueError(f"reference coreset positions must lie in [0, {ln.size})")
    edges = np.unique(np.quantile(ln, np.linspace(0, 1, 21))) if bins is None else np.asarray(bins, dtype=float)
    sid = np.clip(np.searchsorted(edges, ln, side="right") - 1, 0, len(edges) - 2)
    want = np.bincount(sid[ref], minlength=len(edges) - 1)
    rng = np.random.default_rng(seed)
    picked = []
    for b in np.flatnonzero(want):
        members = np.flatnonzero(sid == b)
        picked.append(rng.choice(members, size=want[b], replace=False))
    return _sorted(np.concatenate(picked))


def within_tokens(select, lengths, budget_tokens: int, n: int) -> np.ndarray:
    """Turn a sequence-count selector `select(m) -> indices` into a token budget: the largest m whose
    selection holds at most `budget_tokens` residues (bisection), topped up with sequences of the m + 1
    selection while they fit. The result holds <= budget_tokens and misses it by less than one sequence."""
    ln = np.asarray(lengths, dtype=np.int64)
    if budget_tokens < ln.min():
        raise ValueError(f"a token budget of {budget_tokens} holds no sequence (the shortest has {ln.min()})")
    if budget_tokens >= ln.sum():
        return np.arange(n, dtype=np.int64)
    lo, hi = 0, n   # tokens(lo) <= budget < tokens(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ln[select(mid)].sum() <= budget_tokens:
            lo = mid
        else:
            hi = mid
    base = select(lo) if lo else np.array([], dtype=np.int64)
    held, total = set(base.tolist()), int(ln[base].sum()) if lo else 0
    for i in select(hi):
        if i not in held:
            if total + ln[i] > budget_tokens:
                break
            held.add(int(i))
            total += int(ln[i])
    return _sorted(sorted(held))
