"""The claims C1-C3 read off the measured grid (Section 4), with gates and calibrated, multiplicity-corrected
verdicts.

1. Gates. A downstream task enters the claims only when the Full pool encoder beats both Raw and the best
   baseline row on its primary metric with a 95% interval that excludes 0 (`stats.paired`); otherwise its
   probe is "not informative at this scale" and the claims ignore it. Before any verdict, the Random arm must
   end below the unigram entropy of the held-out residues (its held-out MLM loss minus that entropy has a 95%
   interval below 0, and its mean at least GATE_MARGIN = 0.1 nats below): a model that learned something beyond
   residue frequencies. If it does not, the preset is mis-sized and there are no verdicts.
2. Families. A claim's family is its comparisons: each method (Top I, CCI) against the claim's baseline, on
   every gated task's primary metric and on the held-out MLM loss.
3. Verdicts. Per comparison the paired difference per seed and its mean over seeds, an interval and p-value
   (`stats.paired`, method "t": seed spread with S - 1 degrees of freedom plus the persistent item part from a
   paired item bootstrap), Holm's correction across the family at alpha / 3: the three claims share alpha = 0.05,
   so that a grid with no true difference reads "supported" anywhere at most 5% of the time (one family per
   claim at 0.05 each gave 5.8% when the seeds dominate). "Supported" when the Holm-adjusted interval (Holm-
   compatible levels, `stats.holm`) excludes 0 in the claim's direction, "contradicted" when it excludes 0
   against it, otherwise "inconclusive". Everything is seeded: the same grid gives the same table.

`assess` works on arrays with a leading grid axis, so the null calibration (`corelib.experiment.calibration`)
runs thousands of simulated grids through exactly this code.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from corelib.errors import InputError
from corelib.experiment import stats

LOWER_IS_BETTER = {"MAE", "MSE", "RMSE", "loss"}
# The range of each metric (percentages, correlations in %, R2 in %, a loss in nats): one arm's interval is clipped
# to it, since a t interval of a bounded mean can otherwise reach past the bound.
BOUNDS = {"ACC": (0, 100), "F1": (0, 100), "AUC": (0, 100), "AUPR": (0, 100), "Pre": (0, 100), "Rec": (0, 100),
          "L": (0, 100), "L/2": (0, 100), "L/5": (0, 100), "L/10": (0, 100), "SC": (-100, 100), "MCC": (-100, 100),
          "R2": (-np.inf, 100), "loss": (0, np.inf)}

HELDOUT_TASK = "held-out MLM"   # the intrinsic comparison: masked-LM loss on the held-out slice
HELDOUT_METRIC = "loss"
BOOT_SEED = 20250           # seeds every bootstrap (with the task's name): the same grid, the same numbers

C2_EPOCHS, C2_STEPS = "Random 10x", "Random 10x (same steps)"
CLAIMS = {
    "C1": "an influence-guided coreset beats random at the same budget",
    "C2": "it beats a random set 10x larger",
    "C3": "fine-tuning before scoring beats w/o ft",
}
# (claim, method arm, baseline arm, budget): C1 and C3 at the paper's sequence budget and at the Random arm's
# residues; C2 under both protocols (the same epochs over the 10x set, as the paper; the same optimiser steps)
COMPARISONS = [
    ("C1", "Top I", "Random", "sequences"), ("C1", "CCI", "Random", "sequences"),
    ("C1", "Top I (residues)", "Random", "residues"), ("C1", "CCI (residues)", "Random", "residues"),
    ("C2", "Top I", C2_EPOCHS, "sequences"), ("C2", "CCI", C2_EPOCHS, "sequences"),
    ("C2", "Top I", C2_STEPS, "sequences"), ("C2", "CCI", C2_STEPS, "sequences"),
    ("C3", "Top I", "Top I (w/o ft)", "sequences"), ("C3", "CCI", "CCI (w/o ft)", "sequences"),
    ("C3", "Top I (residues)", "Top I (w/o ft, residues)", "residues"),
    ("C3", "CCI (residues)", "CCI (w/o ft, residues)", "residues"),
]
GATE_ARM, RAW, FULL = "Random", "Raw", "Full pool"
GATE_MARGIN = 0.1   # nats: the Random arm must end at least this far below the unigram entropy (issue 14's gate)

SUPPORTED, INCONCLUSIVE, CONTRADICTED, NOT_TESTED, NO_VERDICT = 1, 0, -1, 2, 3
VERDICT_TEXT = {SUPPORTED: "supported", INCONCLUSIVE: "inconclusive", CONTRADICTED: "contradicted",
                NOT_TESTED: "not tested: probe not informative at this scale", NO_VERDICT: "no verdict"}
NOT_INFORMATIVE = "probe not informative at this scale"


# ----------------------------------------------------------------------------- the measured grid
@dataclass
class Grid:
    """Everything measured for one modality: per cell and seed the downstream metrics and test items, the
    held-out MLM loss per held-out sequence, the baseline rows, and the unigram entropy of the held-out residues."""

    modality: str
    seeds: tuple
    metrics: pd.DataFrame         # [cell, data_size, seed, task, metric, value, primary, protocol]
    items: pd.DataFrame           # [cell, seed, task, item, num, den]
    heldout: pd.DataFrame         # [cell, seed, item, family, num, den]
    baselines: pd.DataFrame       # [row, seed, task, metric, value, primary, protocol]
    baseline_items: pd.DataFrame  # [row, seed, task, item, num, den]
    entropy: dict                 # unigram entropy (nats) of the held-out residues: "all" and per family
    lower: dict = field(default_factory=dict)   # task -> its primary metric is lower-is-better
    cells: list = field(default_factory=list)   # row order of the cells
    sizes: dict = field(default_factory=dict)   # cell -> sequences it pretrained on
    draws: dict = field(default_factory=dict)   # seed -> the scoring draw its scored cells select from
    scored: frozenset = frozenset()             # the cells that select from scores (share their seed's draw)
    cache: dict = field(default_factory=dict, repr=False, compare=False)   # assessments already computed

    def __deepcopy__(self, memo):   # carried in a summary's attrs, which pandas deep-copies on every operation
        return self

    def primary(self) -> dict[str, str]:
        """Each task's primary metric name."""
        rows = self.metrics[self.metrics["primary"].astype(bool)]
        return dict(rows.drop_duplicates("task")[["task", "metric"]].itertuples(index=False, name=None))

    def lower_is_better(self, task: str, metric: str) -> bool:
        return bool(self.lower.get(task, metric in LOWER_IS_BETTER))


def _arrays(items: pd.DataFrame, key: str, seeds) -> tuple[dict, list]:
    """Per arm `key` value: (num [S, n], den [S, n]) over the union of the seeds' test items. At each seed the
    items are those every arm has there; an item a seed did not score is 0 / 0 (it adds nothing to that seed's
    ratio of sums), so seeds that drew other test items stay paired on the items they share."""
    items = items[items["seed"].isin(seeds)]
    arms = list(dict.fromkeys(items[key]))
    common = {}
    for s in seeds:   # the items of a seed: those every arm run at that seed has (an arm not run there: NaN)
        at = items[items["seed"] == s]
        sets = [set(part) for _, part in at.groupby(key, sort=False)["item"]]
        common[s] = set.intersection(*sets) if sets else set()
    order = sorted(set().union(*common.values()), key=str)
    out = {}
    for arm in arms:
        part = items[items[key] == arm]
        num, den = np.zeros((len(seeds), len(order))), np.zeros((len(seeds), len(order)))
        for k, s in enumerate(seeds):
            one = part[part["seed"] == s].drop_duplicates("item").set_index("item")
            keep = one.reindex(order)
            mask = np.array([i in common[s] for i in order])
            num[k] = np.where(mask, keep["num"].to_numpy(float), 0.0)
            den[k] = np.where(mask, keep["den"].to_numpy(float), 0.0)
        out[arm] = (num, den)
    return out, order


def _weights(name: str, n: int, replicates: int) -> np.ndarray:
    return stats.boot_counts(n, replicates, np.random.default_rng([BOOT_SEED, zlib.crc32(name.encode())]))


@dataclass
class Axis:
    """One comparison axis (a task's primary metric, or the held-out loss): every arm's resampled metric."""

    name: str
    metric: str
    lower: bool
    arms: dict            # arm -> stats.Resampled
    baselines: dict       # baseline row -> stats.Resampled (empty for the held-out loss)


def comparison_axes(grid: Grid, replicates: int = stats.REPLICATES) -> tuple[list[Axis], Axis | None]:
    """The grid as resampled arrays: one Axis per task with items (cells and baseline rows on the test
    items they all have, resampled with the same bootstrap weights), and the held-out loss (or None)."""
    seeds = list(grid.seeds)
    out = []
    for task, metric in grid.primary().items():
        cells = grid.items[grid.items["task"] == task].assign(arm=lambda d: d["cell"])
        if cells.empty:
            continue
        base = grid.baseline_items
        base = base[base["task"] == task].assign(arm=lambda d: d["row"]) if len(base) else cells.iloc[:0]
        arrays, order = _arrays(pd.concat([cells, base], ignore_index=True), "arm", seeds)
        if not order:
            continue
        w = _weights(task, len(order), replicates)
        rows = set(base["arm"])
        out.append(Axis(task, metric, grid.lower_is_better(task, metric),
                            {a: _resample1(v, w) for a, v in arrays.items() if a not in rows},
                            {a: _resample1(v, w) for a, v in arrays.items() if a in rows}))
    held = None
    if len(grid.heldout):
        arrays, order = _arrays(grid.heldout, "cell", seeds)
        if order:
            w = _weights(HELDOUT_TASK, len(order), replicates)
            held = Axis(HELDOUT_TASK, HELDOUT_METRIC, True, {a: _resample1(v, w) for a, v in arrays.items()}, {})
    return out, held


def _resample1(arrays, weights) -> stats.Resampled:
    """`stats.resample` of one measured grid: a leading grid axis of length 1."""
    num, den = arrays
    return stats.resample(num[None], den[None], weights)


# ----------------------------------------------------------------------------- the decision (vectorised)
@dataclass
class Assessment:
    """Gates and verdicts, every array with a leading grid axis G (1 for a measured grid)."""

    tasks: list                # task names (downstream), in column order
    gate: np.ndarray           # [G, T] bool: the task's probe is informative
    gate_raw: list             # per task: Estimate of Full pool - Raw (sign: + = Full better)
    gate_base: list            # per task: Estimates of Full pool - each baseline row
    best_baseline: list        # per task: [G] index into that task's baseline rows
    learned: np.ndarray        # [G] bool: Random's held-out loss is below the unigram entropy
    learned_est: stats.Estimate | None
    seeds: int
    rows: list                 # (claim, method, baseline, budget, task, metric) per comparison
    mean: np.ndarray           # [G, R] advantage of the method (+ = better), mean over seeds
    p: np.ndarray              # [G, R] raw p-values (NaN: not in the family)
    p_holm: np.ndarray         # [G, R]
    level: np.ndarray          # [G, R] two-sided alpha of the Holm-compatible interval
    lo: np.ndarray
    hi: np.ndarray
    verdict: np.ndarray        # [G, R] SUPPORTED / INCONCLUSIVE / CONTRADICTED / NOT_TESTED / NO_VERDICT
    mde: np.ndarray            # [G, R] minimum detectable effect at 80% power and the comparison's Holm level
    pair_seeds: list           # per comparison: the seeds both arms were run at


def _better(est: stats.Estimate, alpha: float) -> np.ndarray:
    lo, _ = est.interval(alpha)
    return lo > 0


def assess(tasks: list[Axis], heldout: Axis | None, entropy, alpha: float = stats.ALPHA,
           method: str = "t", counts: np.ndarray | None = None) -> Assessment:
    """Gates, families, Holm-corrected intervals and verdicts of the claims (module docstring); arrays carry a
    leading grid axis. `entropy`: the unigram entropy of the held-out residues (a number or one per grid)."""
    first = next(iter((tasks[0] if tasks else heldout).arms.values()))
    shape, n_seeds = first.point.shape[:-1], first.point.shape[-1]
    if method == "bootstrap" and counts is None:
        counts = stats.boot_counts(n_seeds, first.boot.shape[-1], np.random.default_rng(BOOT_SEED))

    def compare(a, b, sign):
        return stats.paired(a, b, sign, method, counts)

    gates, gate_raw, gate_base, best_rows = [], [], [], []
    for t in tasks:
        sign = -1.0 if t.lower else 1.0
        if FULL not in t.arms or RAW not in t.arms:   # a grid not evaluated yet: nothing to gate on
            gates.append(np.zeros(shape, dtype=bool))
            gate_raw.append(None)
            gate_base.append([])
            best_rows.append(np.zeros(shape, dtype=int))
            continue
        raw = compare(t.arms[FULL], t.arms[RAW], sign)
        ok = _better(raw, alpha)
        ests, best = [], np.zeros(shape, dtype=int)
        if t.baselines:   # the best baseline row: the one Full pool is ahead of by the least
            ests = [compare(t.arms[FULL], b, sign) for b in t.baselines.values()]
            best = np.argmin(np.stack([e.mean for e in ests], -1), -1)
            beats = np.stack([_better(e, alpha) for e in ests], -1)
            ok = ok & np.take_along_axis(beats, best[..., None], -1)[..., 0]
        gates.append(ok)
        gate_raw.append(raw)
        gate_base.append(ests)
        best_rows.append(best)
    gate = np.stack(gates, -1) if gates else np.zeros((*shape, 0), dtype=bool)

    learned_est, learned = None, np.zeros(shape, dtype=bool)
    if heldout is not None and GATE_ARM in heldout.arms:
        learned_est = compare(heldout.arms[GATE_ARM], entropy, 1.0)
        learned = (learned_est.interval(alpha)[1] < 0) & (learned_est.mean <= -GATE_MARGIN)

    rows, ests, tested = [], [], []
    axes = [(t, gate[..., k]) for k, t in enumerate(tasks)]
    if heldout is not None:
        axes.append((heldout, np.ones(shape, dtype=bool)))   # the held-out loss: always in the family
    for claim, m, base, budget in COMPARISONS:
        for t, in_family in axes:
            if m in t.arms and base in t.arms:
                rows.append((claim, m, base, budget, t.name, t.metric))
                ests.append(compare(t.arms[m], t.arms[base], -1.0 if t.lower else 1.0))
                tested.append(in_family)
    cols = len(rows)
    mean = np.stack([e.mean for e in ests], -1) if cols else np.zeros((*shape, 0))
    tested = np.stack(tested, -1) if cols else np.zeros((*shape, 0), dtype=bool)
    p = np.where(tested, np.stack([e.pvalue() for e in ests], -1), np.nan) if cols else mean.copy()
    p_holm, level = np.full_like(p, np.nan), np.full_like(p, np.nan)
    claim_of = np.array([r[0] for r in rows])
    family_alpha = alpha / len(CLAIMS)   # the claims' families share alpha: a grid's false "supported" stays <= alpha
    for claim in CLAIMS:
        idx = np.flatnonzero(claim_of == claim)
        if idx.size:
            p_holm[..., idx], level[..., idx] = stats.holm(p[..., idx], family_alpha)
    lo, hi, mde = np.full_like(p, np.nan), np.full_like(p, np.nan), np.full_like(p, np.nan)
    for j, est in enumerate(ests):
        at = np.where(np.isnan(level[..., j]), family_alpha, level[..., j])
        lo[..., j], hi[..., j] = est.interval(at)
        mde[..., j] = est.mde(at)
    verdict = np.where(p_holm <= family_alpha, np.where(mean > 0, SUPPORTED, CONTRADICTED), INCONCLUSIVE)
    usable = (learned & (n_seeds >= 2))[..., None] & np.isfinite(p)
    verdict = np.where(tested, np.where(usable, verdict, NO_VERDICT), NOT_TESTED)
    return Assessment([t.name for t in tasks], gate, gate_raw, gate_base, best_rows, learned, learned_est, n_seeds,
                      rows, mean, p, p_holm, level, lo, hi, verdict.astype(int), mde,
                      [int(e.per_seed.shape[-1]) for e in ests])


# ----------------------------------------------------------------------------- tables
def _grid_of(obj) -> Grid:
    if isinstance(obj, Grid):
        return obj
    grid = getattr(obj, "attrs", {}).get("grid")
    if grid is None:
        raise InputError("the claims need the item-level results: pass the Grid that GridRun.evaluate returns "
                         "(or the summary that summarize(grid) returns)")
    return grid


def assess_grid(grid: Grid, replicates: int = stats.REPLICATES) -> tuple[Assessment, list[Axis], Axis | None]:
    """`assess` on one measured grid (G = 1), with the arrays it was computed from (computed once per grid)."""
    if replicates not in grid.cache:
        tasks, held = comparison_axes(grid, replicates)
        if not tasks and held is None:
            raise InputError("the grid holds no test items to compare")
        grid.cache[replicates] = (assess(tasks, held, grid.entropy.get("all", np.nan)), tasks, held)
    return grid.cache[replicates]


def why_no_verdicts(a: Assessment, entropy: float, index=()) -> str:
    """The reason no verdict was given (empty when verdicts were given)."""
    if a.seeds < 2:
        return f"no verdicts: {a.seeds} seed; the seed-to-seed variation needs at least 2 (3 or more advised)"
    if not a.learned[index]:
        if a.learned_est is None:
            return "no verdicts: no held-out MLM loss of the Random arm to check that the models learned"
        lo, hi = a.learned_est.interval(stats.ALPHA)
        loss = a.learned_est.mean[index] + entropy
        return (f"no verdicts: the Random arm's held-out MLM loss {loss:.3f} (95% interval "
                f"[{lo[index] + entropy:.3f}, {hi[index] + entropy:.3f}]) is not at least {GATE_MARGIN} nats below "
                f"the unigram entropy {entropy:.3f} of the held-out residues with its interval below it: the "
                f"pretrained models did not learn more than residue frequencies at this scale (the preset is "
                f"mis-sized)")
    return ""


def gate_line(grid) -> str:
    """One line: the Random arm's held-out loss against the unigram entropy and whether verdicts are given."""
    grid = _grid_of(grid)
    a, _, _ = assess_grid(grid)
    entropy = grid.entropy.get("all", np.nan)
    if a.learned_est is None:
        return "gate: no held-out MLM loss of the Random arm yet"
    lo, hi = a.learned_est.interval(stats.ALPHA)
    gap = float(a.learned_est.mean[0])
    if a.seeds >= 2 and not a.learned[0]:   # the loss and its interval are this line's own first half
        state = "no verdicts: the pretrained models did not learn more than residue frequencies at this scale"
    else:
        state = why_no_verdicts(a, entropy, 0) or "passed: verdicts below"
    side = "below" if gap < 0 else "above"
    return (f"gate: Random's held-out MLM loss is {abs(gap):.3f} nats {side} the unigram entropy {entropy:.3f} "
            f"(loss - entropy {gap:+.3f}, 95% interval [{float(lo[0]):+.3f}, {float(hi[0]):+.3f}]; needed: at least "
            f"{GATE_MARGIN} below, the interval below 0) - {state}")


def no_verdict_reason(grid) -> str:
    """Why a grid (or its summary) gives no verdicts, or "" when it gives them."""
    grid = _grid_of(grid)
    return why_no_verdicts(assess_grid(grid)[0], grid.entropy.get("all", np.nan), 0)


def verdicts(grid) -> pd.DataFrame:
    """Claims C1-C3 per method and comparison: advantage (+ = the method is better), Holm-adjusted interval,
    p-values and the verdict (module docstring; Section 4's claims)."""
    grid = _grid_of(grid)
    a, _, _ = assess_grid(grid)
    note = why_no_verdicts(a, grid.entropy.get("all", np.nan), 0)
    short = "one seed" if a.seeds < 2 else "the Random arm did not learn (the gate line under the table)"
    out = []
    for j, (claim, method, base, budget, task, metric) in enumerate(a.rows):
        code = int(a.verdict[0, j])
        tested = code != NOT_TESTED
        mde = float(a.mde[0, j]) if tested else np.nan
        why = f"{a.pair_seeds[j]} seed(s) in common" if a.pair_seeds[j] < 2 else short
        text = VERDICT_TEXT[code] + (f": {why}" if code == NO_VERDICT else "")
        if code == INCONCLUSIVE:
            text = f"inconclusive: no difference larger than {mde:.3g} detected"
        out.append({"claim": claim, "statement": CLAIMS[claim], "method": method, "baseline": base,
                    "budget": budget, "task": task, "metric": metric, "advantage": float(a.mean[0, j]),
                    "lo": float(a.lo[0, j]) if tested else np.nan, "hi": float(a.hi[0, j]) if tested else np.nan,
                    "level": float(1 - a.level[0, j]) if tested else np.nan,
                    "p": float(a.p[0, j]), "p_holm": float(a.p_holm[0, j]), "seeds": a.pair_seeds[j], "mde": mde,
                    "verdict": text})
    table = pd.DataFrame(out)
    table.attrs["note"] = note
    table.attrs["gate"] = gate_line(grid)
    return table


def _one_arm(r: stats.Resampled, metric: str = "") -> tuple[float, float, float]:
    """Mean over seeds of one arm's metric (G = 1) and its 95% interval over items and seeds, clipped to the
    metric's range (`BOUNDS`)."""
    est = stats.paired(r, 0.0)
    lo, hi = est.interval(stats.ALPHA)
    low, high = BOUNDS.get(metric.split(":")[0], (-np.inf, np.inf))
    return float(est.mean[0]), float(np.clip(lo[0], low, high)), float(np.clip(hi[0], low, high))


def summarize(grid) -> pd.DataFrame:
    """Per row (baselines, Raw, every cell, Full pool), task and metric: mean and std over seeds, and for each
    task's primary metric and the held-out loss a 95% interval over items and seeds and the task's gate. Given
    a Grid, the result keeps it in `attrs["grid"]` for `verdicts`; a plain long table gives mean and std only."""
    if not isinstance(grid, Grid):
        return _summarize_long(grid)
    a, tasks, held = assess_grid(grid)
    gate = {t: ("informative" if a.gate[0, k] else NOT_INFORMATIVE) for k, t in enumerate(a.tasks)}
    resampled = {(t.name, arm): r for t in tasks for arm, r in {**t.arms, **t.baselines}.items()}
    if held is not None:
        resampled.update({(HELDOUT_TASK, arm): r for arm, r in held.arms.items()})
    primary = grid.primary()
    long = pd.concat([grid.metrics.assign(kind="cell"),
                      grid.baselines.rename(columns={"row": "cell"}).assign(kind="baseline", data_size=0)
                      if len(grid.baselines) else None], ignore_index=True)
    rows = []
    for (cell, task, metric), part in long.groupby(["cell", "task", "metric"], sort=False):
        values = part["value"].to_numpy(float)
        row = {"method": cell, "kind": _kind(cell, part["kind"].iat[0]), "data_size": int(part["data_size"].iat[0]),
               "task": task, "metric": metric, "section": "downstream", "primary": primary.get(task) == metric,
               "lower_is_better": grid.lower_is_better(task, metric), "value": float(values.mean()),
               "std": float(values.std(ddof=1)) if len(values) > 1 else np.nan, "seeds": len(values),
               "lo": np.nan, "hi": np.nan, "gate": gate.get(task, "") if primary.get(task) == metric else ""}
        if row["primary"] and (task, cell) in resampled:
            row["value"], row["lo"], row["hi"] = _one_arm(resampled[(task, cell)], metric)
        rows.append(row)
    rows += _heldout_rows(grid, held, a)
    out = pd.DataFrame(rows)
    order = {c: k for k, c in enumerate([*dict.fromkeys(grid.baselines.get("row", pd.Series(dtype=str))), *grid.cells])}
    out = out.sort_values("method", key=lambda s: s.map(order).fillna(len(order)), kind="stable").reset_index(drop=True)
    out.attrs["grid"] = grid
    return out


def _kind(cell: str, kind: str) -> str:
    return "baseline" if kind == "baseline" else "reference" if cell in (RAW, FULL) else "pruned"


def _heldout_rows(grid: Grid, held: Axis | None, a: Assessment) -> list[dict]:
    """Held-out MLM loss per cell (all families and each one), with the unigram entropy of those residues."""
    if held is None:
        return []
    seeds = list(grid.seeds)
    learned = "the Random arm learned" if a.learned[0] else "the Random arm did not learn"
    rows = []
    families = sorted(grid.heldout["family"].astype(str).unique())
    for scope in ["all", *families]:
        part = grid.heldout if scope == "all" else grid.heldout[grid.heldout["family"].astype(str) == scope]
        arrays, order = _arrays(part, "cell", seeds)
        if not order:
            continue
        w = _weights(HELDOUT_TASK if scope == "all" else f"{HELDOUT_TASK}:{scope}", len(order), stats.REPLICATES)
        h = float(grid.entropy.get(scope, np.nan))
        for cell, (num, den) in arrays.items():
            r = _resample1((num, den), w)
            mean, lo, hi = _one_arm(r, HELDOUT_METRIC)
            per_seed = r.point[0]
            base = {"method": cell, "kind": _kind(cell, "cell"), "data_size": int(grid.sizes.get(cell, 0)),
                    "task": HELDOUT_TASK, "section": "heldout", "family": scope, "lower_is_better": True,
                    "std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else np.nan, "seeds": len(per_seed),
                    "items": len(order), "entropy": h}
            rows.append({**base, "metric": HELDOUT_METRIC if scope == "all" else f"{HELDOUT_METRIC}:{scope}",
                         "primary": scope == "all", "value": mean, "lo": lo, "hi": hi,
                         "gate": learned if scope == "all" and cell == GATE_ARM else ""})
    return rows


def _summarize_long(long: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of a long table (cell, data_size, task, metric, seed, value)."""
    out = (long.groupby(["cell", "data_size", "task", "metric"], sort=False)["value"]
           .agg(value="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else np.nan, seeds="size")
           .reset_index())
    out["lower_is_better"] = out["metric"].isin(LOWER_IS_BETTER)
    return out.rename(columns={"cell": "method"})
