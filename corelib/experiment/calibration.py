"""Null calibration of the verdicts: simulated grids with no true difference between the pruned arms, run through
the same `claims.assess`, either of a preset's shape under a synthetic noise model or fitted to a run's own files.

The noise model (`NoiseModel`), per axis (a task's primary metric or the held-out loss), arm a, seed s and test
item i with weight den_i (1 for a per-item task; masked tokens of a held-out sequence for the MLM loss), on the
metric's own scale:

    x[a, s, i] = mu_a + u_i + v_s + e_as + b_a,g(s) + g_ai + eps_asi / sqrt(den_i),    num = den_i x,  den = den_i

    u_i      item effect (difficulty), shared by every arm and seed                          sd `item`
    v_s      seed effect shared by every arm at seed s (split, head luck)                    sd `seed`
    e_as     the arm's own run-to-run variation at seed s (pretraining init, masks, order)   sd `arm_seed`
    b_a,g    a scored arm's effect of scoring draw g = g(s) (its D_sub, fine-tune, Fisher),
             shared by the seeds that select from that draw                                  sd `draw`
    g_ai     the arm's persistent preference for some items (zero mean)                      sd `arm_item`
    eps      per arm, seed and item noise                                                    sd `residual`

Under the null every pruned arm has mu = 0; the gates pass (Full pool `reference` above the pruned arms, Raw and the
baseline row `reference` below; on the held-out loss the pruned arms sit `learned` below the entropy). A grid is
"false-supported" (or "false-contradicted") in a claim when any row of the claim reads so.

`fit` estimates the components from a measured grid's per-seed and per-item arrays (method of moments, module
functions below), keeps only the axes whose gate opened, every arm's real seeds and the run's scoring draws, so the
simulated families have the real sizes; the power is that of the C1 comparisons when each method arm is ahead by
the comparison's own minimum detectable effect (`mde` of the verdict table). The smoke preset, which gives no
verdicts, keeps the synthetic default.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from corelib.experiment import claims, stats
from corelib.experiment.claims import COMPARISONS, CONTRADICTED, FULL, RAW, SUPPORTED, Axis

PRUNED = list(dict.fromkeys(arm for _, m, b, _ in COMPARISONS for arm in (b, m)))
SCORED = frozenset(a for a in PRUNED if not a.startswith("Random"))
BASELINE = "Baseline"
ENTROPY = 1.4          # nats; any value: the held-out arms are placed relative to it
HELDOUT_DEN = 15.0     # mean masked tokens per held-out sequence (~100 residues x 15%)
SIM_REPLICATES = 500   # item-bootstrap replicates of a simulated grid (the interval's item part only)


@dataclass(frozen=True)
class NoiseModel:
    """Standard deviations of the simulated grid's parts (module docstring), in metric units."""

    item: float = 1.0
    seed: float = 0.1
    arm_seed: float = 0.2
    arm_item: float = 0.1
    residual: float = 1.0
    draw: float = 0.0
    reference: float = 3.0   # Full pool above, Raw and the baseline below the pruned arms (the gates pass)
    learned: float = 3.0     # the pruned arms' held-out loss below the unigram entropy (the gate passes)

    def sd(self, den: np.ndarray) -> float:
        """SD over seeds of one arm's ratio-of-sums metric at fixed test items."""
        return float(np.sqrt(self.seed ** 2 + self.arm_seed ** 2 + self.draw ** 2 + self.residual ** 2 / den.sum()))


@dataclass(frozen=True)
class Shape:
    """What a simulated grid looks like: seeds, test items per task, held-out sequences, the scoring draws
    (seed s selects from draw s mod `draws`) and the seeds (positions 0..seeds-1) each arm runs at (default all)."""

    seeds: int
    tasks: dict          # task -> test items
    heldout: int
    draws: int = 0       # 0: as many as seeds
    arms: dict = field(default_factory=dict)   # arm -> seed positions it runs at
    heldout_den: tuple = ()                    # masked tokens of each held-out sequence (default: Poisson draws)

    def positions(self, arm: str) -> np.ndarray:
        """The seed positions an arm runs at."""
        return np.asarray(self.arms.get(arm, range(self.seeds)), dtype=int)

    def groups(self) -> np.ndarray:
        """The scoring draw of each seed position."""
        return np.arange(self.seeds) % (self.draws or self.seeds)


def _draw(rng, noise: NoiseModel, grids: int, shape: Shape, den: np.ndarray, means: dict,
          conditional: bool = True) -> dict:
    """Per arm (num, den) arrays [grids, seeds, items] under the noise model; an arm not run at a seed has
    num = den = 0 there (its metric is NaN, as in a measured grid). `conditional`: a scored arm's draw effects are
    centred on their mean over the seeds it runs at (the realized scoring runs are what is compared: C1 and C2 ask
    about the coresets of these draws); otherwise they are random around 0 (a claim about scoring in general)."""
    n, seeds, groups = den.size, shape.seeds, shape.groups()
    shared = rng.normal(0, noise.item, (grids, 1, n)) + rng.normal(0, noise.seed, (grids, seeds, 1))
    out = {}
    for arm, mu in means.items():
        mu = np.asarray(mu, dtype=float).reshape(-1, 1, 1) if np.ndim(mu) else mu
        x = (mu + shared + rng.normal(0, noise.arm_seed, (grids, seeds, 1))
             + rng.normal(0, noise.arm_item, (grids, 1, n))
             + rng.normal(0, noise.residual, (grids, seeds, n)) / np.sqrt(den))
        run = np.zeros((1, seeds, 1))
        run[0, shape.positions(arm)] = 1.0
        if arm in SCORED and noise.draw > 0:
            b = rng.normal(0, noise.draw, (grids, groups.max() + 1, 1))[:, groups]
            if conditional:
                b = b - (b * run).sum(1, keepdims=True) / run.sum()
            x = x + b
        out[arm] = (x * den * run, den * run)
    return out


def _resampled(arrays, weights) -> dict:
    return {arm: stats.resample(num, den, weights) for arm, (num, den) in arrays.items()}


def simulate(shape: Shape, grids: int, effect: float = 0.0, noise: NoiseModel | dict = NoiseModel(), seed: int = 0,
             method: str = "t", replicates: int = stats.REPLICATES, chunk: int = 50, shifts: dict | None = None,
             conditional: bool = True) -> dict:
    """Draw `grids` grids of `shape` and run them through `claims.assess`: Top I ahead by `effect` SD on every
    axis, or the method arms ahead by `shifts[(axis, arm)]` metric units; `noise` one model or one per axis;
    `conditional`: the scoring draws' effects centred (`_draw`).
    Returns the share of grids with any "supported" / "contradicted" row, overall and per claim, Top I's C1 power
    (or the power of the shifted C1 rows), the gate pass rates and the SDs."""
    rng = np.random.default_rng([seed, 1])
    noises = noise if isinstance(noise, dict) else {}
    pick = lambda axis: noises.get(axis, noise if isinstance(noise, NoiseModel) else NoiseModel())  # noqa: E731
    task_den = {t: np.ones(n) for t, n in shape.tasks.items()}
    held_den = None
    if shape.heldout:
        held_den = (np.asarray(shape.heldout_den, dtype=float) if shape.heldout_den
                    else 1.0 + rng.poisson(HELDOUT_DEN - 1, shape.heldout).astype(float))
    weights = {t: stats.boot_counts(n, replicates, np.random.default_rng([seed, 2, k]))
               for k, (t, n) in enumerate(shape.tasks.items())}
    if shape.heldout:
        weights[claims.HELDOUT_TASK] = stats.boot_counts(shape.heldout, replicates, np.random.default_rng([seed, 3]))
    counts = stats.boot_counts(shape.seeds, replicates, np.random.default_rng([seed, 4]))
    sds = {t: pick(t).sd(d) for t, d in task_den.items()}
    if held_den is not None:
        sds[claims.HELDOUT_TASK] = pick(claims.HELDOUT_TASK).sd(held_den)
    shift = lambda axis, arm: (shifts or {}).get((axis, arm), effect * sds[axis] if arm == "Top I" else 0.0)  # noqa: E731
    found = {SUPPORTED: [], CONTRADICTED: []}
    per_claim = {(c, v): [] for c in claims.CLAIMS for v in found}
    power, gates, learned = [], [], []
    for start in range(0, grids, chunk):
        g = min(chunk, grids - start)
        tasks = []
        for t, den in task_den.items():
            nm = pick(t)
            means = {**{a: shift(t, a) for a in PRUNED}, FULL: nm.reference, RAW: -nm.reference, BASELINE: -nm.reference}
            arms = _resampled(_draw(rng, nm, g, shape, den, means, conditional), weights[t])
            base = {BASELINE: arms.pop(BASELINE)}
            tasks.append(Axis(t, "primary", False, arms, base))
        held = None
        if held_den is not None:
            nm, axis = pick(claims.HELDOUT_TASK), claims.HELDOUT_TASK
            means = {**{a: ENTROPY - nm.learned - shift(axis, a) for a in PRUNED}, FULL: ENTROPY - 2 * nm.learned,
                     RAW: ENTROPY + nm.learned}
            arms = _resampled(_draw(rng, nm, g, shape, held_den, means, conditional), weights[axis])
            held = Axis(axis, claims.HELDOUT_METRIC, True, arms, {})
        a = claims.assess(tasks, held, ENTROPY, method=method, counts=counts)
        claim_of = np.array([r[0] for r in a.rows])
        for v in found:
            hit = a.verdict == v
            found[v].append(hit.any(-1))
            for c in claims.CLAIMS:
                per_claim[(c, v)].append(hit[:, claim_of == c].any(-1))
        rows = [j for j, r in enumerate(a.rows) if r[0] == "C1" and (shifts is not None or r[1] == "Top I")]
        power.append((a.verdict[:, rows] == SUPPORTED).mean(-1) if rows else np.zeros(g))
        gates.append(a.gate.all(-1))
        learned.append(a.learned)
    rate = lambda parts: float(np.concatenate(parts).mean())  # noqa: E731
    return {"grids": grids, "method": method, "effect": effect,
            "supported_rate": rate(found[SUPPORTED]), "contradicted_rate": rate(found[CONTRADICTED]),
            "claims": {c: {"supported": rate(per_claim[(c, SUPPORTED)]),
                           "contradicted": rate(per_claim[(c, CONTRADICTED)])} for c in claims.CLAIMS},
            "c1_top_i_supported": rate(power), "gates_passed": rate(gates), "learned_passed": rate(learned),
            "sd": sds, "rows": len(COMPARISONS) * (len(shape.tasks) + (shape.heldout > 0))}


def calibrate(shape: Shape, grids: int = 1000, noise: NoiseModel = NoiseModel(), seed: int = 0,
              method: str = "t") -> dict:
    """The false-supported rate over `grids` null grids and the power at a 1-SD effect (module docstring)."""
    null = simulate(shape, grids, 0.0, noise, seed, method)
    alt = simulate(shape, grids, 1.0, noise, seed + 1, method)
    return {"false_supported": null["supported_rate"], "false_contradicted": null["contradicted_rate"],
            "claims": null["claims"], "power": alt["c1_top_i_supported"], "gates_passed": null["gates_passed"],
            "learned_passed": null["learned_passed"], "sd": null["sd"], "grids": grids, "method": method,
            "shape": shape, "noise": noise}


# ----------------------------------------------------------------------------- fitted to a run
def _components(arrays: dict, axis: Axis, groups: np.ndarray) -> NoiseModel:
    """Method-of-moments estimates of one axis's noise components (module docstring) from its arms' per-seed,
    per-item (num, den) arrays [S, n] (`claims._arrays`) and their resampled metrics."""
    point = {a: r.point[0] for a, r in axis.arms.items()}                      # [S] per arm (NaN where not run)
    full = [a for a, p in point.items() if np.isfinite(p).all() and a != FULL]
    plain = [a for a in full if a not in SCORED]
    m = np.array([point[a] for a in (plain if len(plain) >= 2 else full)])     # arms x seeds
    arms_, seeds_ = m.shape
    inter = m - m.mean(1, keepdims=True) - m.mean(0, keepdims=True) + m.mean()
    ms_int = float((inter ** 2).sum() / max(1, (arms_ - 1) * (seeds_ - 1)))
    ms_seed = float(arms_ * m.mean(0).var(ddof=1)) if seeds_ > 1 else 0.0
    seed_var = max(0.0, (ms_seed - ms_int) / arms_)
    # residual: an item's spread over seeds beyond the arm's own, scaled by its weight
    num, den = arrays[full[0]]
    weight = den[0]
    keep = weight > 0
    diffs, scale = [], float(np.mean(1 / weight[keep]) - 1 / weight[keep].sum())
    for a in full:
        num, den = arrays[a]
        x = num[:, keep] / den[:, keep]
        diffs.append(float(np.mean(x.var(0, ddof=1)) - point[a].var(ddof=1)))
    residual_var = max(0.0, float(np.mean(diffs)) / scale) if scale > 0 else 0.0
    arm_seed_var = max(0.0, ms_int - residual_var / weight[keep].sum())
    draw_var, k = 0.0, len(np.unique(groups))
    scored = [a for a in full if a in SCORED]
    if 1 < k < seeds_ and scored:   # a scored arm's interaction beyond the unscored arms' at the same seeds
        ref, est = m.mean(0), []
        for a in scored:
            r = point[a] - ref - (point[a] - ref).mean()
            means = np.array([r[groups == g].mean() for g in range(k)])
            sizes = np.array([(groups == g).sum() for g in range(k)])
            est.append(means.var(ddof=1) - ms_int / sizes.mean())
        draw_var = max(0.0, float(np.mean(est)))
    n_eff = weight[keep].sum() ** 2 / (weight[keep] ** 2).sum()
    arm_items = []
    for a, b in [(a, b) for a in full for b in full if a < b][:20]:   # the paired item part V_a = 2 arm_item^2 / n
        est = stats.paired(axis.arms[a], axis.arms[b])
        v_seed = est.per_seed.var(-1, ddof=1) / est.per_seed.shape[-1]
        arm_items.append(max(0.0, float(est.se[0]) ** 2 - float(v_seed[0])) * n_eff / 2)
    items = np.nanmean([arrays[a][0][:, keep] / arrays[a][1][:, keep] for a in full], axis=(0, 1))
    return NoiseModel(item=float(items.std()), seed=float(np.sqrt(seed_var)), arm_seed=float(np.sqrt(arm_seed_var)),
                      arm_item=float(np.sqrt(np.median(arm_items))) if arm_items else 0.0,
                      residual=float(np.sqrt(residual_var)), draw=float(np.sqrt(draw_var)))


def axis_items(axis: Axis) -> int:
    """Test items of an axis."""
    return next(iter(axis.arms.values())).items


def fit(grid: claims.Grid) -> tuple[Shape, dict, dict]:
    """(shape, {axis: NoiseModel}, {(axis, method arm): its C1 minimum detectable effect}) of a measured grid: the
    axes whose gate opened (and the held-out loss), every arm's seeds, the run's scoring draws (module docstring)."""
    a, tasks, held = claims.assess_grid(grid)
    seeds = list(grid.seeds)
    groups = np.array([grid.draws.get(s, s) for s in seeds])
    _, groups = np.unique(groups, return_inverse=True)
    axes = [t for k, t in enumerate(tasks) if a.gate[0, k]] + ([held] if held is not None else [])
    noises = {}
    for t in axes:
        part = grid.heldout if t is held else grid.items[grid.items["task"] == t.name]
        arrays, _ = claims._arrays(part, "cell", seeds)
        noises[t.name] = _components(arrays, t, groups)
    arms = {}
    for t in axes:
        for arm, r in t.arms.items():
            arms[arm] = tuple(int(k) for k in np.flatnonzero(np.isfinite(r.point[0])))
    shape = Shape(len(seeds), {t.name: axis_items(t) for t in axes if t is not held},
                  axis_items(held) if held is not None else 0, int(groups.max() + 1), arms,
                  tuple(_heldout_den(grid)) if held is not None else ())
    shifts = {}
    for j, (claim, m, _, _, task, _) in enumerate(a.rows):
        if claim == "C1" and np.isfinite(a.mde[0, j]) and task in noises:
            shifts[(task, m)] = float(a.mde[0, j])
    return shape, noises, shifts


def _heldout_den(grid: claims.Grid) -> np.ndarray:
    """Masked tokens of each held-out sequence, in the grid's item order (as `claims._arrays` orders them)."""
    first = grid.heldout.drop_duplicates("item").set_index("item")["den"]
    return first.reindex(sorted(first.index, key=str)).to_numpy(dtype=float)


def fitted_report(grid: claims.Grid, grids: int, seed: int = 0) -> list[str]:
    """The lines `experiment --simulate-null N` prints for a measured grid: the fitted components, the
    false-supported and false-contradicted rates per claim over N null grids, and the power at one MDE."""
    shape, noises, shifts = fit(grid)
    null = simulate(shape, grids, 0.0, noises, seed, replicates=SIM_REPLICATES)
    alt = simulate(shape, grids, 0.0, noises, seed + 1, replicates=SIM_REPLICATES, shifts=shifts)
    wide = simulate(shape, grids, 0.0, noises, seed + 2, replicates=SIM_REPLICATES, conditional=False)
    lines = [f"{grid.modality}: noise fitted to the run ({shape.seeds} seeds, {shape.draws} scoring draw(s), axes "
             f"{', '.join(noises)}); {grids} null grids"]
    for axis, nm in noises.items():
        lines.append(f"  {axis}: sd seed {nm.seed:.3g}, arm-seed {nm.arm_seed:.3g}, scoring draw {nm.draw:.3g}, "
                     f"arm-item {nm.arm_item:.3g}, residual {nm.residual:.3g}")
    lines += [f"false-supported rate: {null['supported_rate']:.4f} (" + ", ".join(
                  f"{c} {v['supported']:.4f}" for c, v in null["claims"].items()) + ")",
              f"false-contradicted rate: {null['contradicted_rate']:.4f} (" + ", ".join(
                  f"{c} {v['contradicted']:.4f}" for c, v in null["claims"].items()) + ")",
              f"power at one MDE (the C1 comparisons, each method arm ahead by its own MDE): "
              f"{alt['c1_top_i_supported']:.4f}",
              f"  the verdicts are conditional on the run's {shape.draws} scoring draw(s): C1 and C2 compare the "
              f"coresets of these draws over pretraining seeds, C3 pairs each draw with and without the fine-tune; "
              f"read as claims about scoring in general (draw effects random around 0), the rates would be: "
              f"false-supported {wide['supported_rate']:.4f}, false-contradicted {wide['contradicted_rate']:.4f} "
              f"(the error a shared scoring draw adds)"]
    return lines


def preset_shape(preset, modality: str) -> Shape:
    """A grid's shape from a preset: its seeds and draws, the available tasks with their test items (capped at
    `downstream.test`) and 4 x the held-out cap of sequences."""
    from corelib.evaluation import TASKS, available
    from corelib.experiment.heldout import HELDOUT_CAP

    cap = preset.downstream.test
    tasks = {}
    for task in TASKS[modality]:
        try:
            if not available(task):
                continue
            n = _test_rows(task)
        except Exception:   # noqa: BLE001 - a task whose test set cannot be counted gets the cap (or 200)
            n = None
        n = n if n is not None else (cap or 200)
        tasks[task.name] = int(min(n, cap) if cap else n)
    return Shape(len(preset.seeds), tasks, 4 * HELDOUT_CAP, preset.grid.scoring_draws)


def _test_rows(task) -> int | None:
    dataset = getattr(task, "dataset", None)
    if not dataset or dataset.startswith("bench:"):
        return None
    from corelib.data.labelled import load_labelled

    table = load_labelled(dataset)
    return int((table["split"] == "test").sum())


def calibration_report(preset, modality: str, grids: int, grid: claims.Grid | None = None) -> list[str]:
    """The lines `experiment --simulate-null N` prints: fitted to the run when its grid has verdicts to check,
    else the synthetic noise model on the preset's shape (the smoke preset)."""
    if grid is not None and not claims.no_verdict_reason(grid):
        return fitted_report(grid, grids)
    shape = preset_shape(preset, modality)
    result = calibrate(shape, grids)
    tasks = ", ".join(f"{t} {n}" for t, n in shape.tasks.items())
    lines = [f"{modality}, preset {preset.name}: synthetic noise model (no run with verdicts to fit); {shape.seeds} "
             f"seed(s); test items {tasks}; {shape.heldout} held-out sequences; {grids} grids each"]
    if shape.seeds < 2:
        lines.append("  one seed: no verdict can be given, so nothing is ever supported (the claims need >= 2 seeds)")
    sds = ", ".join(f"{t} {v:.3g}" for t, v in result["sd"].items())
    lines += [f"false-supported rate: {result['false_supported']:.4f}",
              f"false-contradicted rate: {result['false_contradicted']:.4f}",
              f"power at a 1-SD effect: {result['power']:.4f}",
              f"  SD = the standard deviation over seeds of one arm's primary metric at fixed test items under the "
              f"noise model ({sds}); power = the share of Top I's C1 comparisons read 'supported' when Top I is 1 SD "
              f"ahead on every task and on the held-out loss; noise model: {result['noise']}"]
    return lines


ARMS = ["Raw", *PRUNED, "Full pool"]


def synthetic_grid(shape: Shape, noise: NoiseModel = NoiseModel(), seed: int = 0, effect: float = 0.0,
                   learned: bool = True, modality: str = "rna") -> claims.Grid:
    """One grid drawn from the noise model (module docstring) as the tables a measured grid has (metrics,
    items, held-out losses, a baseline row): Top I `effect` SD ahead; with `learned` False the pruned arms'
    held-out loss sits `noise.learned` above the unigram entropy instead of below it."""
    import pandas as pd

    rng = np.random.default_rng([seed, 5])
    seeds = list(range(shape.seeds))
    metrics, items, base_m, base_i, held = [], [], [], [], []

    def emit(arrays, task, metric, into_m, into_i, key):
        for arm, (num, den) in arrays.items():
            for k, s in enumerate(seeds):
                d = np.broadcast_to(den, num.shape)[0, k]
                if d.sum() == 0:
                    continue
                into_m.append({key: arm, "seed": s, "task": task, "metric": metric,
                               "value": float(num[0, k].sum() / d.sum()), "primary": True, "protocol": "simulated"})
                into_i += [{key: arm, "seed": s, "task": task, "item": f"{task}:{i}", "num": float(num[0, k, i]),
                            "den": float(d[i])} for i in range(num.shape[-1])]

    for t, n in shape.tasks.items():
        den = np.ones(n)
        sd = noise.sd(den)
        means = {**{a: 0.0 for a in PRUNED}, FULL: noise.reference, RAW: -noise.reference, BASELINE: -noise.reference}
        means["Top I"] = effect * sd
        arrays = _draw(rng, noise, 1, shape, den, means)
        emit({BASELINE: arrays.pop(BASELINE)}, t, "primary", base_m, base_i, "row")
        emit(arrays, t, "primary", metrics, items, "cell")
    if shape.heldout:
        den = 1.0 + rng.poisson(HELDOUT_DEN - 1, shape.heldout).astype(float)
        level = ENTROPY - noise.learned if learned else ENTROPY + noise.learned
        means = {**{a: level for a in PRUNED}, FULL: level - noise.learned, RAW: ENTROPY + 2 * noise.learned}
        means["Top I"] = level - effect * noise.sd(den)
        for arm, (num, d) in _draw(rng, noise, 1, shape, den, means).items():
            for k, s in enumerate(seeds):
                if d[0, k].sum() == 0:
                    continue
                held += [{"cell": arm, "seed": s, "item": f"held:{i}", "family": "simulated", "num": float(num[0, k, i]),
                          "den": float(d[0, k, i])} for i in range(shape.heldout)]
    metrics = pd.DataFrame(metrics).assign(data_size=0)
    draws = {s: s % (shape.draws or shape.seeds) for s in seeds}
    return claims.Grid(modality, tuple(seeds), metrics, pd.DataFrame(items), pd.DataFrame(held),
                       pd.DataFrame(base_m), pd.DataFrame(base_i), {"all": ENTROPY, "simulated": ENTROPY},
                       {t: False for t in shape.tasks}, ARMS, {a: 0 for a in ARMS}, draws, SCORED)
