"""Null calibration of the verdicts: simulated grids with no true difference between the pruned arms, of the
preset's shape (seeds, tasks, test sizes, held-out sequences), run through the same `claims.assess`.

The noise model (`NoiseModel`), per task, arm a, seed s and test item i with weight den_i (1 for a per-item
task; masked tokens of a held-out sequence for the MLM loss), on the metric's own scale:

    x[a, s, i] = mu_a + u_i + v_s + e_as + g_ai + eps_asi / sqrt(den_i),     num = den_i * x,  den = den_i

    u_i    item effect (difficulty), shared by every arm and seed            sd `item`
    v_s    seed effect shared by every arm at seed s (split, head luck)      sd `seed`
    e_as   the arm's own run-to-run variation at seed s (pretraining init,
           masks, order, its draw, D_sub)                                    sd `arm_seed`
    g_ai   the arm's persistent preference for some items (zero mean)        sd `arm_item`
    eps    per arm, seed and item noise                                      sd `residual`

Under the null every pruned arm (Random, Random 10x, Top I, CCI and their w/o ft variants) has mu = 0. The
gates are made to pass, the worst case for the claims: Full pool is `reference` above the pruned arms, Raw and
the baseline row `reference` below; on the held-out loss (lower is better) the pruned arms are `learned` below
the unigram entropy. A grid is "false-supported" when any row of any claim reads "supported".

Power: the same model with Top I ahead of every other arm by `effect` SD on every task and on the held-out loss,
where SD is the standard deviation over seeds of one arm's metric at fixed test items,
sqrt(seed^2 + arm_seed^2 + residual^2 / sum(den)): the spread the old rule compared margins with. Power = the
share of Top I's C1 rows (against Random) that read "supported".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corelib.experiment import claims, stats
from corelib.experiment.claims import CLAIMS, FULL, RAW, SUPPORTED, TaskData

PRUNED = ["Random", *claims.CLAIMS["C2"][2], "Top I (w/o ft)", "CCI (w/o ft)", "Top I", "CCI"]
BASELINE = "Baseline"
ENTROPY = 1.4          # nats; any value: the held-out arms are placed relative to it
HELDOUT_DEN = 15.0     # mean masked tokens per held-out sequence (~100 residues x 15%)


@dataclass(frozen=True)
class NoiseModel:
    """Standard deviations of the simulated grid's parts (module docstring), in metric units."""

    item: float = 1.0
    seed: float = 0.1
    arm_seed: float = 0.2
    arm_item: float = 0.1
    residual: float = 1.0
    reference: float = 3.0   # Full pool above, Raw and the baseline below the pruned arms (the gates pass)
    learned: float = 3.0     # the pruned arms' held-out loss below the unigram entropy (the gate passes)

    def sd(self, den: np.ndarray) -> float:
        """SD over seeds of one arm's ratio-of-sums metric at fixed test items."""
        return float(np.sqrt(self.seed ** 2 + self.arm_seed ** 2 + self.residual ** 2 / den.sum()))


@dataclass(frozen=True)
class Shape:
    """What a simulated grid looks like: seeds, test items per task, held-out sequences."""

    seeds: int
    tasks: dict          # task -> test items
    heldout: int


def _draw(rng, noise: NoiseModel, grids: int, seeds: int, den: np.ndarray, means: dict) -> dict:
    """Per arm (num, den) arrays [grids, seeds, items] under the noise model."""
    n = den.size
    shared = rng.normal(0, noise.item, (grids, 1, n)) + rng.normal(0, noise.seed, (grids, seeds, 1))
    out = {}
    for arm, mu in means.items():
        mu = np.asarray(mu, dtype=float).reshape(-1, 1, 1) if np.ndim(mu) else mu
        x = (mu + shared + rng.normal(0, noise.arm_seed, (grids, seeds, 1))
             + rng.normal(0, noise.arm_item, (grids, 1, n))
             + rng.normal(0, noise.residual, (grids, seeds, n)) / np.sqrt(den))
        out[arm] = (x * den, den)
    return out


def simulate(shape: Shape, grids: int, effect: float = 0.0, noise: NoiseModel = NoiseModel(), seed: int = 0,
             method: str = "t", replicates: int = stats.REPLICATES, chunk: int = 50) -> dict:
    """Draw `grids` grids of `shape` (Top I ahead by `effect` SD) and run them through `claims.assess`;
    returns the share of grids with any "supported" row, Top I's C1 power, the gate pass rates and the SDs."""
    rng = np.random.default_rng([seed, 1])
    task_den = {t: np.ones(n) for t, n in shape.tasks.items()}
    held_den = 1.0 + rng.poisson(HELDOUT_DEN - 1, shape.heldout).astype(float) if shape.heldout else None
    weights = {t: stats.item_weights(n, replicates, np.random.default_rng([seed, 2, k]))
               for k, (t, n) in enumerate(shape.tasks.items())}
    if shape.heldout:
        weights[claims.HELDOUT_TASK] = stats.item_weights(shape.heldout, replicates, np.random.default_rng([seed, 3]))
    counts = stats.seed_counts(shape.seeds, replicates, np.random.default_rng([seed, 4]))
    sds = {t: noise.sd(d) for t, d in task_den.items()}
    if held_den is not None:
        sds[claims.HELDOUT_TASK] = noise.sd(held_den)
    any_supported, power, gates, learned = [], [], [], []
    for start in range(0, grids, chunk):
        g = min(chunk, grids - start)
        tasks = []
        for t, den in task_den.items():
            means = {**{a: 0.0 for a in PRUNED}, FULL: noise.reference, RAW: -noise.reference,
                     BASELINE: -noise.reference}
            means["Top I"] = effect * sds[t]
            arms = {a: stats.resample(*v, weights[t]) for a, v in _draw(rng, noise, g, shape.seeds, den, means).items()}
            base = {BASELINE: arms.pop(BASELINE)}
            tasks.append(TaskData(t, "primary", False, arms, base))
        held = None
        if held_den is not None:
            means = {**{a: ENTROPY - noise.learned for a in PRUNED}, FULL: ENTROPY - 2 * noise.learned,
                     RAW: ENTROPY + noise.learned}
            means["Top I"] = ENTROPY - noise.learned - effect * sds[claims.HELDOUT_TASK]
            arms = {a: stats.resample(*v, weights[claims.HELDOUT_TASK])
                    for a, v in _draw(rng, noise, g, shape.seeds, held_den, means).items()}
            held = TaskData(claims.HELDOUT_TASK, claims.HELDOUT_METRIC, True, arms, {})
        a = claims.assess(tasks, held, ENTROPY, method=method, counts=counts)
        supported = a.verdict == SUPPORTED
        any_supported.append(supported.any(-1))
        c1_top = [j for j, r in enumerate(a.rows) if r[0] == "C1" and r[1] == "Top I"]
        power.append(supported[:, c1_top].mean(-1))
        gates.append(a.gate.all(-1))
        learned.append(a.learned)
    return {"grids": grids, "method": method, "effect": effect,
            "supported_rate": float(np.concatenate(any_supported).mean()),
            "c1_top_i_supported": float(np.concatenate(power).mean()),
            "gates_passed": float(np.concatenate(gates).mean()),
            "learned_passed": float(np.concatenate(learned).mean()),
            "sd": sds, "rows": sum(len(claims.baselines_of(c, m)) for c in CLAIMS for m in CLAIMS[c][1])
            * (len(shape.tasks) + (shape.heldout > 0))}


def calibrate(shape: Shape, grids: int = 1000, noise: NoiseModel = NoiseModel(), seed: int = 0,
              method: str = "t") -> dict:
    """The false-supported rate over `grids` null grids and the power at a 1-SD effect (module docstring)."""
    null = simulate(shape, grids, 0.0, noise, seed, method)
    alt = simulate(shape, grids, 1.0, noise, seed + 1, method)
    return {"false_supported": null["supported_rate"], "power": alt["c1_top_i_supported"],
            "gates_passed": null["gates_passed"], "learned_passed": null["learned_passed"], "sd": null["sd"],
            "grids": grids, "method": method, "shape": shape, "noise": noise}


def preset_shape(preset, modality: str) -> Shape:
    """A grid's shape from a preset: its seeds, the available tasks with their test items (capped at
    `downstream.test`) and the held-out sequences of its pool (a missing pool: the held-out cap x 4 sources)."""
    from corelib.evaluation import TASKS, available
    from corelib.experiment.heldout import HELDOUT_CAP, heldout_size

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
    try:
        held = heldout_size(preset, modality)
    except Exception:   # noqa: BLE001 - e.g. the paper corpus is not on this machine
        held = 4 * HELDOUT_CAP
    return Shape(len(preset.seeds), tasks, int(held))


def _test_rows(task) -> int | None:
    dataset = getattr(task, "dataset", None)
    if not dataset or dataset.startswith("bench:"):
        return None
    from corelib.data.labelled import load_labelled

    table = load_labelled(dataset)
    return int((table["split"] == "test").sum())


def calibration_report(preset, modality: str, grids: int) -> list[str]:
    """The lines `experiment --simulate-null N` prints: the grid's shape, the false-supported rate over N null
    grids, the power at a 1-SD effect over N more, and what the SD is."""
    shape = preset_shape(preset, modality)
    result = calibrate(shape, grids)
    tasks = ", ".join(f"{t} {n}" for t, n in shape.tasks.items())
    lines = [f"{modality}, preset {preset.name}: {shape.seeds} seed(s); test items {tasks}; {shape.heldout} "
             f"held-out sequences; {grids} grids each"]
    if shape.seeds < 2:
        lines.append("  one seed: no verdict can be given, so nothing is ever supported (the claims need >= 2 seeds)")
    sds = ", ".join(f"{t} {v:.3g}" for t, v in result["sd"].items())
    lines += [f"false-supported rate: {result['false_supported']:.4f}",
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
                into_m.append({key: arm, "seed": s, "task": task, "metric": metric,
                               "value": float(num[0, k].sum() / np.broadcast_to(den, num.shape)[0, k].sum()),
                               "primary": True, "protocol": "simulated"})
                d = np.broadcast_to(den, num.shape)[0, k]
                into_i += [{key: arm, "seed": s, "task": task, "item": f"{task}:{i}", "num": float(num[0, k, i]),
                            "den": float(d[i])} for i in range(num.shape[-1])]

    for t, n in shape.tasks.items():
        den = np.ones(n)
        sd = noise.sd(den)
        means = {**{a: 0.0 for a in PRUNED}, FULL: noise.reference, RAW: -noise.reference, BASELINE: -noise.reference}
        means["Top I"] = effect * sd
        arrays = _draw(rng, noise, 1, shape.seeds, den, means)
        emit({BASELINE: arrays.pop(BASELINE)}, t, "primary", base_m, base_i, "row")
        emit(arrays, t, "primary", metrics, items, "cell")
    if shape.heldout:
        den = 1.0 + rng.poisson(HELDOUT_DEN - 1, shape.heldout).astype(float)
        level = ENTROPY - noise.learned if learned else ENTROPY + noise.learned
        means = {**{a: level for a in PRUNED}, FULL: level - noise.learned, RAW: ENTROPY + 2 * noise.learned}
        means["Top I"] = level - effect * noise.sd(den)
        for arm, (num, d) in _draw(rng, noise, 1, shape.seeds, den, means).items():
            for k, s in enumerate(seeds):
                held += [{"cell": arm, "seed": s, "item": f"held:{i}", "family": "simulated", "num": float(num[0, k, i]),
                          "den": float(d[i])} for i in range(shape.heldout)]
    metrics = pd.DataFrame(metrics).assign(data_size=0)
    return claims.Grid(modality, tuple(seeds), metrics, pd.DataFrame(items), pd.DataFrame(held),
                       pd.DataFrame(base_m), pd.DataFrame(base_i), {"all": ENTROPY, "simulated": ENTROPY},
                       {t: False for t in shape.tasks}, ARMS, {a: 0 for a in ARMS})
