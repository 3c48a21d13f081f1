"""Results anyone can audit (Section 4): a grid's per-seed, per-item files written beside its tables under figures/
(compressed, deterministic bytes), and `verify`, which rebuilds the grid from those files alone and recomputes every
committed verdict, interval and table cell (`python -m corelib experiment --verify`).

figures/05_<preset>_<modality>_items.csv.gz     every test item's (num, den) per cell or baseline row, task and seed,
                                                and every held-out sequence's (num, den) per cell and seed (raw: the
                                                pool-share weighting is applied on reading, as for a run)
figures/05_<preset>_<modality>_metrics.csv.gz   every metric row per cell or baseline row and seed
figures/05_<preset>_<modality>_grid.json        seeds, scoring draws, scored cells, entropies, source weights, sizes
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from corelib.experiment.claims import Grid, summarize, verdicts
from corelib.experiment.heldout import weighted_heldout
from corelib.files import atomic_gzip, atomic_write

KEYS = {"table": ["method", "kind", "data_size"], "verdicts": ["claim", "method", "baseline", "budget", "task"],
        "heldout": ["method", "family"]}


def bundle_paths(folder: Path, preset: str, modality: str) -> dict[str, Path]:
    """The three files of a grid's audit bundle (module docstring)."""
    stem = f"05_{preset}_{modality}"
    return {"items": folder / f"{stem}_items.csv.gz", "metrics": folder / f"{stem}_metrics.csv.gz",
            "grid": folder / f"{stem}_grid.json"}


def write_bundle(grid: Grid, raw_heldout: pd.DataFrame, heldout: dict, folder: Path, preset: str) -> list[Path]:
    """Write a grid's audit bundle: its items and metrics and what reading them back needs (`raw_heldout`: the
    held-out rows before the pool-share weighting; `heldout`: {"entropy", "weights"} of the held-out slice)."""
    paths = bundle_paths(Path(folder), preset, grid.modality)
    items = pd.concat([grid.items.assign(kind="cell"),
                       grid.baseline_items.rename(columns={"row": "cell"}).assign(kind="baseline"),
                       raw_heldout.assign(kind="heldout", task="held-out MLM")], ignore_index=True)
    items = items[["kind", "cell", "seed", "task", "item", "family", "num", "den"]]
    metrics = pd.concat([grid.metrics.assign(kind="cell"),
                         grid.baselines.rename(columns={"row": "cell"}).assign(kind="baseline")], ignore_index=True)
    metrics = metrics[["kind", "cell", "seed", "task", "metric", "value", "primary", "protocol", "data_size"]]
    for key, table in (("items", items), ("metrics", metrics)):
        atomic_gzip(paths[key], lambda gz, table=table: gz.write(table.to_csv(index=False, float_format="%.17g").encode()))
    meta = {"modality": grid.modality, "seeds": list(grid.seeds), "cells": grid.cells, "sizes": grid.sizes,
            "lower": grid.lower, "draws": {str(k): v for k, v in grid.draws.items()}, "scored": sorted(grid.scored),
            "heldout_entropy": heldout["entropy"], "heldout_weights": heldout["weights"]}
    atomic_write(paths["grid"], lambda tmp: tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n"))
    return list(paths.values())


def read_bundle(folder: Path, preset: str, modality: str) -> Grid:
    """The grid a bundle holds, rebuilt from its files alone (held-out rows weighted as `grid.weighted_heldout`)."""
    paths = bundle_paths(Path(folder), preset, modality)
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        from corelib.errors import InputError

        raise InputError(f"{missing[0]}: the audit file is missing; run the grid (python -m corelib experiment "
                         f"--preset {preset} --modality {modality}) to write it")
    meta = json.loads(paths["grid"].read_text())
    items = pd.read_csv(paths["items"], dtype={"item": str, "family": str, "cell": str})
    metrics = pd.read_csv(paths["metrics"], dtype={"cell": str})
    cells = items[items["kind"] == "cell"].drop(columns=["kind", "family"])
    base = items[items["kind"] == "baseline"].drop(columns=["kind", "family"]).rename(columns={"cell": "row"})
    raw = items[items["kind"] == "heldout"].drop(columns=["kind", "task"])
    held, entropy = weighted_heldout(raw.reset_index(drop=True), meta["heldout_entropy"], meta["heldout_weights"])
    cell_m = metrics[metrics["kind"] == "cell"].drop(columns="kind")
    base_m = metrics[metrics["kind"] == "baseline"].drop(columns=["kind", "data_size"]).rename(columns={"cell": "row"})
    return Grid(modality, tuple(meta["seeds"]), cell_m.reset_index(drop=True), cells.reset_index(drop=True), held,
                base_m.reset_index(drop=True), base.reset_index(drop=True), entropy, meta["lower"], meta["cells"],
                meta["sizes"], {int(k): v for k, v in meta["draws"].items()}, frozenset(meta["scored"]))


def recomputed(grid: Grid) -> dict[str, pd.DataFrame]:
    """The tables the report writes, recomputed from a grid: {"table", "verdicts", "heldout"} as their CSVs hold
    them (rounded as `save_table` rounds)."""
    from corelib.report.output import rounded
    from corelib.report.tables import experiment_table, heldout_table

    summary = summarize(grid)
    numbers, _ = experiment_table(summary)
    claims = verdicts(summary)
    return {"table": numbers, "verdicts": rounded(claims.drop(columns=["statement"])),
            "heldout": rounded(heldout_table(summary))}


def verify(folder: Path, preset: str, modality: str) -> list[str]:
    """One line per committed table cell that its recomputation from the bundle does not reproduce (empty: every
    verdict, interval and table cell checks out)."""
    got = recomputed(read_bundle(folder, preset, modality))
    lines = []
    for name, table in got.items():
        path = Path(folder) / f"05_{preset}_{modality}_{name}.csv"
        if not path.exists():
            lines.append(f"{path}: committed table missing")
            continue
        committed = pd.read_csv(path)
        keys = [k for k in KEYS[name] if k in committed.columns]
        if len(committed) != len(table):
            lines.append(f"{path}: {len(committed)} rows committed, {len(table)} recomputed")
        for (_, want), (_, have) in zip(committed.iterrows(), table.reset_index(drop=True).iterrows()):
            where = ", ".join(f"{k}={want[k]}" for k in keys)
            for col in committed.columns:
                a, b = want[col], have.get(col, np.nan)
                if not _same(a, b):
                    lines.append(f"{path.name}: {where}: {col} committed {a!r}, recomputed {b!r}")
    return lines


def _same(a, b) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    try:
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))
    except (TypeError, ValueError):
        return str(a) == str(b)
