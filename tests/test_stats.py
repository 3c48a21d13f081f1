"""corelib.experiment.stats: ratio-of-sums resampling, paired intervals and p-values checked by hand (explicit
loops over the same bootstrap draws, scipy's t and bootstrap), and Holm's correction (statsmodels when
installed, a hand-worked example always); and the null calibration of the verdicts (at most 5% of grids with
no true difference read "supported")."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from corelib.experiment import stats
from corelib.experiment.calibration import NoiseModel, Shape, calibrate, simulate


def _tiny(seed=0, seeds=3, n=7):
    rng = np.random.default_rng(seed)
    den = rng.integers(1, 5, size=n).astype(float)
    a = rng.binomial(den.astype(int), 0.7, size=(seeds, n)).astype(float)
    b = rng.binomial(den.astype(int), 0.5, size=(seeds, n)).astype(float)
    return a, b, den


def test_resample_is_the_ratio_of_sums_on_each_replicate_by_an_explicit_loop():
    a, _, den = _tiny()
    w = stats.boot_counts(len(den), 50, np.random.default_rng(1))
    r = stats.resample(a, den, w)
    assert np.allclose(r.point, a.sum(1) / den.sum())
    for b in range(50):
        drawn = np.repeat(np.arange(len(den)), w[b].astype(int))     # the items replicate b drew
        assert len(drawn) == len(den)
        for s in range(3):
            assert r.boot[s, b] == pytest.approx(a[s, drawn].sum() / den[drawn].sum())


def test_percentile_interval_by_hand_and_against_scipy_on_a_single_level_case():
    # one seed: the two-level bootstrap reduces to the paired item bootstrap of sign * (A - B)
    a, b, den = _tiny(seeds=1, n=40)
    w = stats.boot_counts(40, 4000, np.random.default_rng(2))
    counts = stats.boot_counts(1, 4000, np.random.default_rng(3))
    est = stats.paired(stats.resample(a, den, w), stats.resample(b, den, w), method="bootstrap", counts=counts)
    reps = []
    for k in range(4000):                                                # the same draws, one at a time
        drawn = np.repeat(np.arange(40), w[k].astype(int))
        reps.append(a[0, drawn].sum() / den[drawn].sum() - b[0, drawn].sum() / den[drawn].sum())
    reps = np.sort(reps)
    lo, hi = est.interval(0.05)
    assert lo == pytest.approx(reps[int(np.floor(0.025 * 3999))]) and hi == pytest.approx(reps[int(np.ceil(0.975 * 3999))])
    assert est.pvalue() == pytest.approx(min(1, 2 * min(((reps <= 0).sum() + 1) / 4001, ((reps >= 0).sum() + 1) / 4001)))
    # scipy's percentile bootstrap of the same statistic (its own draws): the same interval up to Monte Carlo error
    ref = sps.bootstrap((np.arange(40),), lambda i: a[0, i].sum() / den[i].sum() - b[0, i].sum() / den[i].sum(),
                        vectorized=False, n_resamples=4000, method="percentile", rng=np.random.default_rng(4))
    width = hi - lo
    assert abs(ref.confidence_interval.low - lo) < 0.1 * width and abs(ref.confidence_interval.high - hi) < 0.1 * width


def test_two_level_bootstrap_by_an_explicit_loop_over_seeds_and_items():
    a, b, den = _tiny(seeds=3, n=9)
    w = stats.boot_counts(9, 300, np.random.default_rng(5))
    counts = stats.boot_counts(3, 300, np.random.default_rng(6))
    est = stats.paired(stats.resample(a, den, w), stats.resample(b, den, w), sign=-1, method="bootstrap", counts=counts)
    for k in range(300):
        drawn = np.repeat(np.arange(9), w[k].astype(int))
        picked = np.repeat(np.arange(3), counts[k].astype(int))       # the seeds replicate k drew
        d = [-(a[s, drawn].sum() - b[s, drawn].sum()) / den[drawn].sum() for s in picked]
        assert est.boot[k] == pytest.approx(np.mean(d))


def test_t_interval_is_the_paired_t_test_when_items_add_no_variance():
    # every item differs by the same amount at a seed: the item bootstrap adds nothing, so the interval is
    # scipy's one-sample t interval of the per-seed differences (S - 1 degrees of freedom)
    shift = np.array([1.0, 2.0, 4.0])
    base = np.random.default_rng(7).normal(size=(3, 12))
    w = stats.boot_counts(12, 500, np.random.default_rng(8))
    est = stats.paired(stats.resample(base + shift[:, None], np.ones(12), w), stats.resample(base, np.ones(12), w))
    assert est.mean == pytest.approx(shift.mean()) and est.df == 2
    assert est.se == pytest.approx(shift.std(ddof=1) / np.sqrt(3))
    lo, hi = est.interval(0.05)
    ref = sps.t.interval(0.95, 2, loc=shift.mean(), scale=sps.sem(shift))
    assert (lo, hi) == pytest.approx(ref)
    assert est.pvalue() == pytest.approx(sps.ttest_1samp(shift, 0).pvalue)


def test_t_interval_adds_the_persistent_item_part_by_hand():
    # the same item effects at every seed (crossed): V = s^2 / S + max(0, Var*(D) - V_e / S), from the draws
    rng = np.random.default_rng(9)
    item = rng.normal(0, 1, 30)
    a = item + rng.normal(0, 0.3, (3, 30)) + np.array([[0.1], [0.3], [0.2]])
    b = rng.normal(0, 0.3, (3, 30))
    w = stats.boot_counts(30, 800, np.random.default_rng(10))
    est = stats.paired(stats.resample(a, np.ones(30), w), stats.resample(b, np.ones(30), w))
    d = a.mean(1) - b.mean(1)
    dstar = np.array([[(w[k] * (a[s] - b[s])).sum() / w[k].sum() for k in range(800)] for s in range(3)])
    dbar = dstar.mean(0)
    v_e = np.mean([np.var(dstar[s] - dbar, ddof=1) for s in range(3)]) * 3 / 2
    v = d.var(ddof=1) / 3 + max(0.0, np.var(dbar, ddof=1) - v_e / 3)
    assert est.se == pytest.approx(np.sqrt(v))
    assert est.interval(0.01)[1] == pytest.approx(d.mean() + sps.t.ppf(0.995, 2) * np.sqrt(v))


def test_one_seed_gives_no_t_interval_and_a_constant_is_a_one_arm_interval():
    a, _, den = _tiny(seeds=1)
    w = stats.boot_counts(len(den), 100, np.random.default_rng(11))
    est = stats.paired(stats.resample(a, den, w), 0.0)
    assert np.isnan(est.se) and np.isnan(est.pvalue())
    a3, _, den3 = _tiny(seeds=3)
    w3 = stats.boot_counts(len(den3), 100, np.random.default_rng(12))
    one = stats.paired(stats.resample(a3, den3, w3), 1.5)
    assert one.mean == pytest.approx((a3.sum(1) / den3.sum()).mean() - 1.5)


def test_holm_by_hand_on_three_p_values():
    # sorted 0.01, 0.03, 0.04: 3 x 0.01 = 0.03; max(0.03, 2 x 0.03) = 0.06; max(0.06, 1 x 0.04) = 0.06
    adj, level = stats.holm([0.01, 0.04, 0.03], alpha=0.05)
    assert adj == pytest.approx([0.03, 0.06, 0.06])
    # only the first is rejected (0.01 <= 0.05 / 3); its interval is at 0.05 / 3, the others at 0.05 / (3 - 1)
    assert level == pytest.approx([0.05 / 3, 0.05 / 2, 0.05 / 2])
    # NaN = not in the family; a leading axis holds independent families
    adj, level = stats.holm([[0.01, np.nan, 0.04], [0.5, 0.001, np.nan]])
    assert adj[0] == pytest.approx([0.02, np.nan, 0.04], nan_ok=True)
    assert adj[1] == pytest.approx([0.5, 0.002, np.nan], nan_ok=True)
    assert level[0] == pytest.approx([0.025, np.nan, 0.05], nan_ok=True)
    assert level[1] == pytest.approx([0.05, 0.025, np.nan], nan_ok=True)


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(13).uniform(0, 0.1, 12)
    reject, corrected, _, _ = multitest.multipletests(p, alpha=0.05, method="holm")
    adj, _ = stats.holm(p)
    assert adj == pytest.approx(corrected) and ((adj <= 0.05) == reject).all()


def test_holm_intervals_exclude_zero_exactly_when_holm_rejects():
    rng = np.random.default_rng(14)
    w = stats.boot_counts(20, 400, rng)
    ests = [stats.paired(stats.resample(rng.normal(mu, 1, (3, 20)), np.ones(20), w),
                         stats.resample(rng.normal(0, 1, (3, 20)), np.ones(20), w)) for mu in (0, 0.5, 2, 4, 8)]
    p = np.array([float(e.pvalue()) for e in ests])
    adj, level = stats.holm(p)
    for e, a, lvl in zip(ests, adj, level):
        lo, hi = e.interval(lvl)
        assert (lo > 0 or hi < 0) == (a <= 0.05)


SMOKE = Shape(3, {"Bin": 80, "Loc": 80, "SS": 80, "Contact": 80}, 13)   # protein at smoke size, 3 seeds


def test_null_calibration_at_most_5_percent_of_1000_grids_read_supported():
    null = simulate(SMOKE, 1000, 0.0)
    assert null["gates_passed"] == 1.0 and null["learned_passed"] == 1.0   # every comparison was in play
    assert null["supported_rate"] <= 0.05, null


@pytest.mark.slow
def test_null_calibration_holds_across_noise_mixes_and_a_large_effect_is_found():
    for noise in (NoiseModel(arm_seed=0.6, arm_item=0.0), NoiseModel(arm_seed=0.02, arm_item=0.4),
                  NoiseModel(seed=1.0)):
        assert simulate(SMOKE, 500, 0.0, noise)["supported_rate"] <= 0.05, noise
    many = Shape(10, SMOKE.tasks, 13)
    assert simulate(many, 200, 4.0)["c1_top_i_supported"] > 0.8


def test_the_plain_two_level_percentile_bootstrap_fails_calibration_with_three_seeds():
    # why the verdicts do not use it: resampling 3 seeds puts the extreme seed in the tails. Two tasks keep each
    # claim's family small enough (12 rows) that Holm's first level (0.05 / 3 / 12) lies above the bootstrap
    # p-value's resolution (2 / 2001); with four tasks no bootstrap p-value could ever reach it.
    assert simulate(Shape(3, {"Bin": 80, "Loc": 80}, 13), 600, 0.0, method="bootstrap")["supported_rate"] > 0.05


def test_calibrate_reports_rates_and_the_sd():
    out = calibrate(Shape(3, {"T": 30}, 10), 40)
    assert 0 <= out["false_supported"] <= 1 and 0 <= out["power"] <= 1
    assert out["sd"]["T"] == pytest.approx(np.sqrt(0.1 ** 2 + 0.2 ** 2 + 1.0 / 30))
