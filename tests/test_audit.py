"""The audit bundle (corelib.experiment.audit): a grid's per-item files round-trip to the same grid, `verify`
recomputes every committed table cell from them, and a cell changed by hand (or an item changed in the bundle) is
reported line by line."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from corelib.experiment import summarize, verdicts
from corelib.experiment.audit import read_bundle, verify, write_bundle
from corelib.experiment.calibration import Shape, synthetic_grid
from corelib.report.tables import save_experiment_tables


@pytest.fixture
def committed(tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_FIGURES", str(tmp_path))
    grid = synthetic_grid(Shape(3, {"Aff": 30, "Bin": 20}, 12, draws=1), seed=4, effect=2.0)
    held = {"entropy": dict(grid.entropy), "weights": {"simulated": 1.0}}
    summary = summarize(grid)
    save_experiment_tables(summary, verdicts(summary), "smoke", "rna")
    write_bundle(grid, grid.heldout, held, tmp_path, "smoke")
    return grid, tmp_path


def test_the_bundle_round_trips_to_the_same_verdicts(committed):
    grid, folder = committed
    back = read_bundle(folder, "smoke", "rna")
    assert back.seeds == grid.seeds and back.cells == grid.cells and back.scored == grid.scored
    pd.testing.assert_frame_equal(verdicts(back).drop(columns="statement"), verdicts(grid).drop(columns="statement"))
    first = gzip.open(folder / "05_smoke_rna_items.csv.gz").read()
    write_bundle(back, grid.heldout, {"entropy": {k: v for k, v in back.entropy.items() if k != "pooled"},
                                      "weights": {"simulated": 1.0}}, folder, "smoke")   # the raw held-out rows
    assert gzip.open(folder / "05_smoke_rna_items.csv.gz").read() == first          # the same bytes again


def test_verify_passes_and_names_every_changed_cell(committed, cli):
    _, folder = committed
    assert verify(folder, "smoke", "rna") == []
    status, out, _ = cli("experiment", "--preset", "smoke", "--modality", "rna", "--verify")
    assert status == 0 and "every committed verdict" in out
    path = folder / "05_smoke_rna_verdicts.csv"
    table = pd.read_csv(path)
    table.loc[0, "advantage"] = table.loc[0, "advantage"] + 1.0           # a committed number that is not the data's
    table.to_csv(path, index=False)
    lines = verify(folder, "smoke", "rna")
    assert len(lines) == 1 and "advantage committed" in lines[0] and "claim=C1" in lines[0]
    status, out, _ = cli("experiment", "--preset", "smoke", "--modality", "rna", "--verify")
    assert status == 1 and out.count("\n") == 1


def test_an_item_changed_in_the_bundle_shows_in_the_tables(committed):
    _, folder = committed
    path = folder / "05_smoke_rna_items.csv.gz"
    items = pd.read_csv(path, dtype={"item": str})
    rows = np.flatnonzero((items["cell"] == "Top I") & (items["task"] == "Aff").to_numpy())
    items.loc[rows, "num"] += 5.0
    path.write_bytes(gzip.compress(items.to_csv(index=False).encode(), mtime=0))
    lines = verify(folder, "smoke", "rna")
    assert any("table.csv: method=Top I" in line and "Aff primary" in line for line in lines)
    assert any("verdicts.csv" in line and "method=Top I" in line for line in lines)
