"""corelib.experiment.claims: the gates and the calibrated verdicts worked out by hand on small grids where
every item of an arm moves by the same amount at a seed (so the item bootstrap adds nothing and each interval is
a paired t interval over the seeds: mean +- t(S-1) * s / sqrt(S)), and the table path against the array path."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from corelib.experiment import claims, stats
from corelib.experiment.calibration import Shape, synthetic_grid
from corelib.experiment.claims import Grid, summarize, verdicts

ARMS = ["Raw", "Random", "Random 10x", "Top I (w/o ft)", "CCI (w/o ft)", "Top I", "CCI", "Full pool"]
T2 = sps.t.ppf(0.975, 2)    # 4.303: the 95% quantile of t with 2 degrees of freedom


def make_grid(tasks: dict, held: dict | None = None, entropy: float = 1.4, seeds=(0, 1, 2), n: int = 6,
              lower=None) -> Grid:
    """tasks: {task: {arm or 'Composition...': per-seed shift}}; every item of an arm at seed s is base_i + shift_s
    (arms absent: shift 0). held: {arm: per-seed loss}; every held-out sequence's loss is that value."""
    items, metrics, base_i, base_m, losses = [], [], [], [], []
    for task, shifts in tasks.items():
        for arm in ARMS + [a for a in shifts if a not in ARMS]:
            for k, s in enumerate(seeds):
                shift = shifts.get(arm, [0.0] * len(seeds))[k]
                rows = [{"task": task, "item": f"i{i}", "num": 50.0 + i + shift, "den": 1.0, "seed": s} for i in range(n)]
                metric = {"task": task, "metric": "ACC", "value": np.mean([r["num"] for r in rows]), "seed": s,
                          "primary": True, "protocol": "probe"}
                if arm in ARMS:
                    items += [{**r, "cell": arm} for r in rows]
                    metrics.append({**metric, "cell": arm, "data_size": 1})
                else:
                    base_i += [{**r, "row": arm} for r in rows]
                    base_m.append({**metric, "row": arm})
    held = held if held is not None else {a: [entropy - 0.5] * len(seeds) for a in ARMS}
    for arm in ARMS:
        for k, s in enumerate(seeds):
            loss = held.get(arm, [entropy - 0.5] * len(seeds))[k]
            losses += [{"cell": arm, "seed": s, "item": f"h{i}", "family": "SRC", "num": loss * (10 + i),
                        "den": 10.0 + i} for i in range(5)]
    return Grid("rna", tuple(seeds), pd.DataFrame(metrics), pd.DataFrame(items), pd.DataFrame(losses),
                pd.DataFrame(base_m), pd.DataFrame(base_i), {"all": entropy, "SRC": entropy}, lower or {}, ARMS,
                {a: 1 for a in ARMS})


# T1: Full - Raw = 10, 11, 12 (beaten), Full - Composition = 1, 2, 3: mean 2, s 1, lo = 2 - 4.303 / sqrt(3) < 0
# T2: Full - Composition = 5, 5.5, 6: mean 5.5, s 0.5, lo = 5.5 - 4.303 * 0.5 / sqrt(3) = 4.26 > 0
GATED = {"T1": {"Full pool": [10, 11, 12], "Composition": [9, 9, 9]},
         "T2": {"Full pool": [10, 11, 12], "Composition": [5, 5.5, 6], "Top I": [3, 3.1, 2.9], "CCI": [-3, -3.1, -2.9]}}


def test_gates_by_hand():
    s = summarize(make_grid(GATED))
    gate = s[s["primary"] & (s["section"] == "downstream")].drop_duplicates("task").set_index("task")["gate"]
    assert gate["T1"] == "probe not informative at this scale" and gate["T2"] == "informative"
    a, _, _ = claims.assess_grid(make_grid(GATED))
    assert a.gate_raw[0].mean[0] == pytest.approx(11) and a.gate_raw[0].se[0] == pytest.approx(1 / np.sqrt(3))
    lo, _ = a.gate_base[1][0].interval(0.05)
    assert lo[0] == pytest.approx(5.5 - T2 * 0.5 / np.sqrt(3))
    assert a.learned[0]   # Random's held-out loss 0.9 every seed, entropy 1.4


def test_the_best_baseline_row_is_the_one_that_must_be_beaten():
    # two baseline rows: Full beats the weak one clearly, the strong one not: the task is not informative
    g = make_grid({"T": {"Full pool": [10, 11, 12], "Composition (weak)": [0, 0, 0], "Composition (strong)": [9, 9, 9]}})
    a, _, _ = claims.assess_grid(g)
    assert not a.gate[0, 0]
    assert list(a.best_baseline[0]) == [list(claims.comparison_axes(g)[0][0].baselines).index("Composition (strong)")]


def test_verdicts_by_hand_supported_contradicted_inconclusive_and_not_tested():
    v = verdicts(make_grid(GATED)).set_index(["claim", "method", "task"])
    assert v.loc[("C1", "Top I", "T1"), "verdict"] == "not tested: probe not informative at this scale"
    assert np.isnan(v.loc[("C1", "Top I", "T1"), "p"])
    top = v.loc[("C1", "Top I", "T2")]
    se = 0.1 / np.sqrt(3)
    p = 2 * sps.t.sf(3 / se, 2)
    assert top["advantage"] == pytest.approx(3) and top["p"] == pytest.approx(p)
    # the family of C1: Top I and CCI on T2 and on the held-out loss (T1 is out); alpha 0.05 / 3 claims;
    # Top I and CCI tie at the smallest p: Holm multiplies by 4, then 3 (and keeps the running max)
    assert top["p_holm"] == pytest.approx(4 * p)
    levels = sorted([v.loc[("C1", "Top I", "T2"), "level"], v.loc[("C1", "CCI", "T2"), "level"]])
    assert levels == pytest.approx([1 - 0.05 / 3 / 3, 1 - 0.05 / 3 / 4])
    level = 1 - top["level"]
    assert top["lo"] == pytest.approx(3 - sps.t.ppf(1 - level / 2, 2) * se)
    assert top["verdict"] == "supported"
    # the minimum detectable effect at 80% power and the comparison's Holm level, with its df
    assert top["mde"] == pytest.approx((sps.t.ppf(1 - level / 2, 2) + sps.t.ppf(0.8, 2)) * se)
    assert top["seeds"] == 3
    assert v.loc[("C1", "CCI", "T2"), "verdict"] == "contradicted"
    held = v.loc[("C1", "Top I", "held-out MLM")]                                  # identical losses: p = 1
    assert held["verdict"] == f"inconclusive: no difference larger than {held['mde']:.3g} detected"
    assert v.loc[("C2", "Top I", "T2"), "verdict"] == "supported"                  # Random 10x is at 0 too
    assert v.loc[("C3", "Top I", "T2"), "baseline"] == "Top I (w/o ft)"
    assert v.loc[("C3", "Top I", "T2"), "verdict"] == "supported"


def test_lower_is_better_turns_the_sign():
    g = make_grid({"T": {"Full pool": [-10, -11, -12], "Composition": [0, 0, 0], "Top I": [-3, -3.1, -2.9]}},
                  lower={"T": True})
    v = verdicts(g).set_index(["claim", "method", "task"])
    assert v.loc[("C1", "Top I", "T"), "advantage"] == pytest.approx(3)
    assert v.loc[("C1", "Top I", "T"), "verdict"] == "supported"
    # the held-out loss is lower-is-better as well: Top I 0.2 nats below Random at every seed
    held = {a: [0.9, 0.9, 0.9] for a in ARMS} | {"Top I": [0.7, 0.71, 0.69]}
    v = verdicts(make_grid({"T": {"Full pool": [10, 11, 12]}}, held=held)).set_index(["claim", "method", "task"])
    assert v.loc[("C1", "Top I", "held-out MLM"), "advantage"] == pytest.approx(0.2)
    assert v.loc[("C1", "Top I", "held-out MLM"), "verdict"] == "supported"


def test_no_verdicts_when_the_random_arm_did_not_learn():
    # Random's held-out loss 1.0, 1.1, 1.2: hi = 1.1 + 4.303 * 0.1 / sqrt(3) = 1.348, below 1.4 but not below 1.3
    held = {a: [1.0, 1.1, 1.2] for a in ARMS}
    assert claims.no_verdict_reason(make_grid(GATED, held=held, entropy=1.4)) == ""
    g = make_grid(GATED, held=held, entropy=1.3)
    v = verdicts(g).set_index(["claim", "method", "task"])
    assert v.loc[("C1", "Top I", "T2"), "verdict"].startswith("no verdict: the Random arm did not learn")
    assert v.loc[("C1", "Top I", "T1"), "verdict"].startswith("not tested")
    reason = claims.no_verdict_reason(g)
    assert "1.100" in reason and "[0.852, 1.348]" in reason
    assert "not at least 0.1 nats below the unigram entropy 1.300" in reason
    assert verdicts(g).attrs["note"] == reason


def test_the_gate_needs_a_margin_of_a_tenth_of_a_nat():
    # every held-out loss 1.0 at every seed: a zero-width interval at gap = 1.0 - entropy; it must be <= -0.1
    held = {a: [1.0, 1.0, 1.0] for a in ARMS}
    assert "mis-sized" in claims.no_verdict_reason(make_grid(GATED, held=held, entropy=1.05))   # 0.05 below
    assert claims.no_verdict_reason(make_grid(GATED, held=held, entropy=1.11)) == ""             # 0.11 below
    line = claims.gate_line(make_grid(GATED, held=held, entropy=1.11))
    assert line.startswith("gate: Random's held-out MLM loss is 0.110 nats below the unigram entropy 1.110") \
        and "passed" in line
    line = claims.gate_line(make_grid(GATED, held=held, entropy=1.05))
    assert "0.050 nats below" in line and "no verdicts" in line and "passed" not in line


def test_c2_is_judged_under_both_protocols():
    arms = ARMS + [claims.C2_STEPS]
    g = make_grid(GATED)
    g.items = pd.concat([g.items, g.items[g.items["cell"] == "Random 10x"].assign(cell=claims.C2_STEPS)])
    g.heldout = pd.concat([g.heldout, g.heldout[g.heldout["cell"] == "Random 10x"].assign(cell=claims.C2_STEPS)])
    g.cells = arms
    v = verdicts(g)
    c2 = v[(v["claim"] == "C2") & (v["task"] == "T2")]
    assert sorted(set(c2["baseline"])) == ["Random 10x", "Random 10x (same steps)"]
    assert len(c2) == 4   # Top I and CCI against each protocol's arm


def test_one_seed_gives_no_verdict():
    g = make_grid(GATED, seeds=(0,), held={a: [0.5] for a in ARMS})
    assert set(verdicts(g)["verdict"]) <= {"no verdict: 1 seed(s) in common",
                                           "not tested: probe not informative at this scale"}
    assert "seed" in claims.no_verdict_reason(g)


def test_items_that_differ_between_seeds_stay_paired_on_the_items_they_share():
    items = pd.DataFrame([{"cell": c, "seed": s, "item": i, "num": v, "den": 1.0}
                          for c in ("A", "B") for s, its in ((0, "abc"), (1, "bcd")) for i, v in zip(its, (1.0, 2.0, 4.0))])
    arrays, order = claims._arrays(items, "cell", [0, 1])
    assert order == ["a", "b", "c", "d"]
    num, den = arrays["A"]
    assert den.tolist() == [[1, 1, 1, 0], [0, 1, 1, 1]]            # an item a seed did not score weighs nothing
    assert (num.sum(1) / den.sum(1)).tolist() == pytest.approx([7 / 3, 7 / 3])


def test_the_table_path_equals_the_array_path_and_is_deterministic():
    g = synthetic_grid(Shape(3, {"A": 30, "B": 20}, 12), effect=2.0, seed=3)
    v = verdicts(g)
    # the same arrays built by hand from the tables, resampled with the task's weights, through assess
    tasks = []
    for task in ("A", "B"):
        part = g.items[g.items["task"] == task]
        n = part["item"].nunique()
        w = claims._weights(task, n, stats.REPLICATES)
        arms = {}
        for arm, rows in part.groupby("cell"):
            m = rows.pivot(index="seed", columns="item", values="num").sort_index(axis=1, key=lambda c: c.map(str))
            arms[arm] = stats.resample(m.to_numpy()[None], np.ones(n), w)
        b = g.baseline_items[g.baseline_items["task"] == task].pivot(index="seed", columns="item", values="num")
        base = {"Baseline": stats.resample(b.sort_index(axis=1, key=lambda c: c.map(str)).to_numpy()[None], np.ones(n), w)}
        tasks.append(claims.Axis(task, "primary", False, arms, base))
    h = g.heldout
    num = h.pivot_table(index=["cell", "seed"], columns="item", values="num").sort_index(axis=1, key=lambda c: c.map(str))
    den = h.pivot_table(index=["cell", "seed"], columns="item", values="den").sort_index(axis=1, key=lambda c: c.map(str))
    wh = claims._weights(claims.HELDOUT_TASK, num.shape[1], stats.REPLICATES)
    held = claims.Axis(claims.HELDOUT_TASK, "loss", True,
                           {a: stats.resample(num.loc[a].to_numpy()[None], den.loc[a].to_numpy()[None], wh)
                            for a in h["cell"].unique()}, {})
    a = claims.assess(tasks, held, g.entropy["all"])
    assert v["advantage"].to_numpy() == pytest.approx(a.mean[0])
    assert v["p"].to_numpy() == pytest.approx(a.p[0], nan_ok=True)
    assert [t.split(":")[0] for t in v["verdict"]] == [claims.VERDICT_TEXT[c].split(":")[0] for c in a.verdict[0]]
    again = synthetic_grid(Shape(3, {"A": 30, "B": 20}, 12), effect=2.0, seed=3)
    pd.testing.assert_frame_equal(verdicts(again), v)


def test_summary_keeps_the_grid_for_the_notebooks_call_pattern():
    g = synthetic_grid(Shape(3, {"A": 10}, 5))
    s = summarize(g)
    assert s.attrs["grid"] is g and verdicts(s).equals(verdicts(g))
    assert {"method", "task", "metric", "value", "std", "lo", "hi", "seeds", "gate", "lower_is_better"} <= set(s.columns)
    with pytest.raises(Exception, match="item-level"):
        verdicts(pd.DataFrame({"method": ["x"]}))
