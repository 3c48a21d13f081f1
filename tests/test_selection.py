"""corelib.selection: Algorithm 1 worked by hand, exact budgets, determinism, the official compat variant,
the baselines, diagnostics, and every bad-input case."""
from __future__ import annotations

import math

import numpy as np
import pytest

from corelib import selection as sel
from corelib.selection import diagnostics, methods


# ----------------------------------------------------------------------------- Algorithm 1 by hand
def test_cci_by_hand_cutoff_then_water_filling():
    # 20 examples: two hardest (100, 90) are cut by beta = 0.1; the rest span [0, 1] in 2 strata
    low = [0.0, 0.1, 0.2]                        # stratum 0 = [0, 0.5): 3 examples
    high = list(np.linspace(0.6, 1.0, 15))        # stratum 1 = [0.5, 1]: 15 examples
    scores = np.array(low + high + [100.0, 90.0])
    picked = sel.cci(scores, budget=8, hard_cutoff=0.1, strata=2, seed=0)
    # smallest stratum first: min(3, floor(8/2)) = 3 -> all of it; then min(15, 5) = 5 from stratum 1
    assert picked.size == 8
    assert set(picked) >= {0, 1, 2} and not set(picked) & {18, 19}
    assert sum(3 <= i <= 17 for i in picked) == 5


def test_cci_by_hand_ties_at_cutoff_and_in_strata():
    scores = np.array([3.0, 3.0, 3.0, 1.0, 0.0])
    # beta = 0.2 -> floor(1.0) = 1 dropped: of the tied 3s, the lowest index (0) goes first
    # remaining [3, 3, 1, 0] in 3 strata of width 1: {4}, {3}, {1, 2} (3.0 lands in the closed top stratum)
    for seed in range(10):
        picked = sel.cci(scores, budget=3, hard_cutoff=0.2, strata=3, seed=seed)
        assert 0 not in picked and {3, 4} <= set(picked) and len(set(picked) & {1, 2}) == 1


def test_cci_strata_smaller_than_their_share_pass_the_rest_on():
    scores = np.array([0.0, 5.0] + [10.0] * 10)   # strata of sizes 1, 1, 10 over [0, 10] with k = 3
    picked = sel.cci(scores, budget=9, hard_cutoff=0.0, strata=3, seed=1)
    # 1 (share 3) -> 1; 1 (share 4) -> 1; 10 (share 7) -> 7
    assert {0, 1} <= set(picked) and picked.size == 9


def test_cci_negative_scores_keep_the_top_example_reachable():
    scores = np.array([-5.0, -4.0, -3.0, -2.0, -1.0])
    assert sel.cci(scores, 5, hard_cutoff=0.0, strata=2).tolist() == [0, 1, 2, 3, 4]
    assert (methods.stratum_of(scores, 2) == [0, 0, 1, 1, 1]).all()   # [-5, -3) and [-3, -1]


def test_cci_all_equal_scores_form_one_stratum():
    scores = np.full(10, 2.5)
    assert (methods.stratum_of(scores, 50) == 0).all()
    picked = sel.cci(scores, 4, hard_cutoff=0.0, strata=50, seed=3)
    assert picked.size == 4 and len(set(picked)) == 4


def test_every_example_lies_in_exactly_one_stratum():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = np.round(rng.normal(size=rng.integers(1, 300)) * rng.choice([1e-6, 1, 1e6]), 2)
        sid = methods.stratum_of(s, 7)
        assert sid.min() >= 0 and sid.max() <= 6 and sid[np.argmax(s)] == (6 if np.ptp(s) > 0 else 0)


def _algorithm1_literal(scores, budget, beta, k):
    """Line-by-line transcription of Algorithm 1 (empty strata included); returns picks per stratum."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: (-scores[i], i))
    kept = sorted(order[math.floor(n * beta):])
    vals = [scores[i] for i in kept]
    lo, hi = min(vals), max(vals)
    width = (hi - lo) / k
    strata = {b: [] for b in range(k)}
    for i, v in zip(kept, vals):
        b = min(int((v - lo) / width), k - 1) if width > 0 else 0   # [lo + b w, lo + (b+1) w), top closed
        strata[b].append(i)
    remaining, m, taken = dict(strata), budget, {}
    while remaining:
        b = min(remaining, key=lambda j: (len(remaining[j]), j))
        m_b = min(len(remaining[b]), m // len(remaining))
        taken[b] = m_b
        m -= m_b
        del remaining[b]
    return strata, taken


def test_cci_allocation_matches_a_literal_transcription_of_algorithm_1():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(5, 400))
        s = rng.exponential(size=n) * rng.choice([1, -1])
        s += rng.random(n) * 1e-9  # no value exactly on an edge: the two binnings then agree
        beta, k = float(rng.choice([0.0, 0.05, 0.1, 0.3])), int(rng.integers(1, 60))
        left = n - math.floor(n * beta)
        budget = int(rng.integers(1, left + 1))
        strata, taken = _algorithm1_literal(list(s), budget, beta, k)
        picked = set(sel.cci(s, budget, hard_cutoff=beta, strata=k, seed=int(rng.integers(1000))).tolist())
        assert len(picked) == budget
        for b, members in strata.items():
            assert len(picked & set(members)) == taken[b]


def test_cci_returns_exactly_the_budget_over_many_random_cases():
    rng = np.random.default_rng(11)
    for _ in range(500):
        n = int(rng.integers(1, 500))
        s = np.round(rng.normal(size=n), int(rng.integers(0, 4)))   # many ties
        beta = float(rng.choice([0.0, 0.05, 0.2, 0.5]))
        left = n - math.floor(n * beta)
        if left == 0:
            continue
        budget = int(rng.integers(1, left + 1))
        picked = sel.cci(s, budget, hard_cutoff=beta, strata=int(rng.integers(1, 80)), seed=int(rng.integers(99)))
        assert picked.size == budget and np.all(np.diff(picked) > 0) and picked.dtype == np.int64
        cut = set(np.lexsort((np.arange(n), -s))[: math.floor(n * beta)].tolist())
        assert not cut & set(picked.tolist())


def test_selections_are_deterministic_per_seed():
    s = np.random.default_rng(0).normal(size=2000)
    assert np.array_equal(sel.cci(s, 300, seed=5), sel.cci(s, 300, seed=5))
    assert not np.array_equal(sel.cci(s, 300, seed=5), sel.cci(s, 300, seed=6))
    assert np.array_equal(sel.random(2000, 300, seed=1), sel.random(2000, 300, seed=1))
    assert np.array_equal(sel.length_stratified(np.arange(2000), 300, seed=2),
                          sel.length_stratified(np.arange(2000), 300, seed=2))


def test_rate_is_the_pruning_rate_alpha():
    s = np.arange(1000.0)
    assert sel.cci(s, 0.9, hard_cutoff=0.05).size == 100          # m = n (1 - alpha)
    assert sel.top_k(s, 0.99).tolist() == list(range(990, 1000))
    assert methods.resolve_budget(1000, 100.0) == 100


# ----------------------------------------------------------------------------- Top-k and friends
def test_top_and_bottom_k_with_ties_prefer_the_lower_index():
    s = np.array([1.0, 5.0, 5.0, 3.0, 5.0])
    assert sel.top_k(s, 2).tolist() == [1, 2]
    assert sel.bottom_k(s, 2).tolist() == [0, 3]


def test_length_stratified_keeps_the_length_distribution():
    lengths = np.concatenate([np.full(800, 100), np.full(200, 1000)])
    picked = sel.length_stratified(lengths, 100, bins=10, seed=0)
    assert picked.size == 100 and (lengths[picked] == 1000).sum() == 20


def test_loss_band_excludes_both_tails():
    v = np.arange(1000.0)
    picked = methods.loss_band(v, 100, lower=0.1, upper=0.9, seed=0)
    assert picked.size == 100 and v[picked].min() >= 99.9 and v[picked].max() <= 899.1


def test_cluster_capped_takes_at_most_cap_per_cluster_and_round_robins():
    clusters = np.array(["a"] * 50 + ["b"] * 3 + ["c"] * 1 + ["d"] * 10)
    picked = sel.cluster_capped(clusters, 4, cap=1, seed=0)
    assert sorted(clusters[picked]) == ["a", "b", "c", "d"]
    picked = sel.cluster_capped(clusters, 7, cap=2, seed=0)
    counts = {c: int((clusters[picked] == c).sum()) for c in "abcd"}
    assert counts == {"a": 2, "b": 2, "c": 1, "d": 2}
    scores = np.arange(64.0)
    best = sel.cluster_capped(clusters, 4, cap=1, scores=scores)
    assert best.tolist() == [49, 52, 53, 63]     # the highest score of each cluster
    with pytest.raises(ValueError, match="cap=1"):
        sel.cluster_capped(clusters, 5, cap=1)


# ----------------------------------------------------------------------------- official compat
def test_official_compat_loses_the_least_influential_example_when_negated_scores_are_negative():
    s = np.array([1.0, 2.0, 3.0, 4.0, 5.0])          # ours: higher = more influential; theirs: -s < 0
    picked = sel.cci_official(s, 5, exclude_lowest_ratio=0.0, strata=2)
    assert picked.tolist() == [1, 2, 3, 4]            # index 0 (score 1, negated -1 = max) is in no stratum
    assert sel.cci(s, 5, hard_cutoff=0.0, strata=2).tolist() == [0, 1, 2, 3, 4]


def test_official_compat_excludes_the_most_influential_through_its_lowest_ratio():
    s = np.arange(100.0)
    picked = sel.cci_official(s, 50, exclude_lowest_ratio=0.1, strata=5)
    assert picked.max() < 90 and 0 not in picked and picked.size == 50


def test_official_compat_is_the_legacy_global_seed_stream():
    s = np.random.default_rng(3).random(500)
    neg = -s
    np.random.seed(42)
    keep = np.ones(500, bool)
    keep[np.argsort(neg)[:50]] = False
    d, idx = neg[keep], np.arange(500)[keep]
    lo, step = d.min(), (d.max() * 1.0001 - d.min()) / 4
    masks = [(d >= lo + i * step) & (d < lo + (i + 1) * step) for i in range(4)]
    counts = [int(m.sum()) for m in masks]
    budgets, rem = [0] * 4, 100
    for j, b in enumerate(np.argsort(counts)):
        budgets[b] = min(counts[b], rem // (4 - j))
        rem -= budgets[b]
    expected = np.sort(np.concatenate([np.random.choice(idx[m], b, replace=False) for m, b in zip(masks, budgets) if b]))
    assert np.array_equal(sel.cci_official(s, 100, exclude_lowest_ratio=0.1, strata=4, seed=42), expected)


# ----------------------------------------------------------------------------- diagnostics
def test_strata_table_counts_pool_and_picks_per_stratum():
    s = np.arange(100.0)
    picked = sel.cci(s, 20, hard_cutoff=0.1, strata=3, seed=0)
    table = sel.strata_table(s, picked, hard_cutoff=0.1, strata=3)
    assert table["pool"].sum() == 90 and table["picked"].sum() == 20
    # three equal strata of 30: floor(20/3) = 6 to the first visited, the carried remainder to the others
    assert table["pool"].tolist() == [30, 30, 30] and table["picked"].tolist() == [6, 7, 7]


def test_jaccard_overlap_and_clumping():
    assert sel.jaccard([1, 2, 3], [2, 3, 4]) == 0.5
    m = sel.overlap_matrix({"a": [1, 2], "b": [2, 3]})
    assert m.loc["a", "a"] == 1.0 and m.loc["a", "b"] == pytest.approx(1 / 3)
    s = np.random.default_rng(0).normal(size=1000)
    assert diagnostics.clumping(s, sel.top_k(s, 100)) == 1.0
    assert diagnostics.clumping(s, sel.random(1000, 100, seed=0)) < 0.35


def test_composition_and_distribution_shift():
    labels = np.array(["x"] * 90 + ["y"] * 10)
    comp = diagnostics.composition(labels, np.arange(80, 100))
    assert comp.set_index("label").loc["y", "picked"] == 0.5 and comp.set_index("label").loc["y", "pool"] == 0.1
    shift = diagnostics.distribution_shift(np.arange(100.0), np.arange(50, 100))
    assert shift["picked_mean"] == 74.5 and shift["ks"] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, match", [
    (lambda: sel.cci(np.arange(10.0), 11), "larger than the pool"),
    (lambda: sel.cci(np.arange(10.0), 10, hard_cutoff=0.2), "left after the hard cutoff"),
    (lambda: sel.cci(np.arange(10.0), 0), "positive"),
    (lambda: sel.top_k(np.arange(10.0), -3), "positive"),
    (lambda: sel.cci(np.array([1.0, np.nan, 2.0]), 1), "NaN/Inf"),
    (lambda: sel.top_k(np.array([1.0, np.inf]), 1), "NaN/Inf"),
    (lambda: sel.cci(np.array([]), 1), "empty"),
    (lambda: sel.cci(np.arange(10.0), 2, hard_cutoff=1.0), r"\[0, 1\)"),
    (lambda: sel.cci(np.arange(10.0), 2, hard_cutoff=-0.1), r"\[0, 1\)"),
    (lambda: sel.cci(np.arange(10.0), 1.5), "pruning rate"),
    (lambda: sel.random(0, 1), "empty"),
])
def test_bad_input_is_a_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_selection_needs_no_torch():
    """A user selects a coreset from a score file on a laptop: corelib.selection imports numpy/pandas only."""
    import subprocess
    import sys

    code = "import sys, corelib.selection; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
