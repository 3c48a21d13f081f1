"""corelib.experiment: the grid of Tables 1-3 (cells, sizes, resumable runs, same inputs -> same metrics)
and the C1-C3 verdicts worked out by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from corelib.config import get_preset
from corelib.experiment import CELLS, cell_size, evaluate_cells, pretrain_cells, summarize, verdicts
from corelib.experiment import grid as experiment
from corelib.layout import slug


def test_cell_names_sizes_and_folders():
    assert [c.name for c in CELLS] == ["Raw", "Random", "Random 10x", "Top I (w/o ft)", "CCI (w/o ft)", "Top I",
                                       "CCI", "Full pool"]
    assert slug("Top I (w/o ft)") == "top_i_wo_ft" and slug("Random 10x") == "random_10x"
    p = get_preset("smoke")
    assert [cell_size(c, p, 256) for c in CELLS] == [0, 24, 240, 24, 24, 24, 24, 256]
    assert cell_size(CELLS[2], p.override({"selection.budget": 0.5}), 100) == 100   # 10 x 50 capped at the pool


def _summary(rows):
    long = pd.DataFrame([{"cell": m, "data_size": 1, "task": t, "metric": k, "seed": s, "value": v}
                         for m, t, k, values in rows for s, v in enumerate(values)])
    return summarize(long)


def test_verdicts_by_hand():
    rows = []
    for method, acc, mae in [("Random", [50, 52], [2.0, 2.2]), ("Random 10x", [60, 62], [1.0, 1.1]),
                             ("Top I", [55, 57], [1.5, 1.6]), ("Top I (w/o ft)", [55, 56], [1.5, 1.7]),
                             ("CCI", [51, 53], [2.1, 2.3]), ("CCI (w/o ft)", [50, 54], [2.0, 2.2])]:
        rows += [(method, "T", "ACC", acc), (method, "T", "MAE", mae)]
    s = summarize(pd.DataFrame([{"cell": m, "data_size": 1, "task": t, "metric": k, "seed": i, "value": v}
                                for m, t, k, vals in rows for i, v in enumerate(vals)]))
    assert s.set_index(["method", "metric"]).loc[("Top I", "ACC"), "std"] == pytest.approx(np.sqrt(2))
    v = verdicts(s).set_index(["claim", "method"])
    # Top I vs Random: ACC +5 (spread 1.41), MAE 1.55 vs 2.1 (lower is better, +0.55, spread 0.14): both clear wins
    assert v.loc[("C1", "Top I"), ["better", "better_beyond_spread"]].tolist() == [2, 2]
    assert v.loc[("C1", "Top I"), "verdict"] == "supported at our scale"
    # vs Random 10x: both clearly worse
    assert v.loc[("C2", "Top I"), "verdict"] == "not supported at our scale"
    # CCI vs Random: +1 ACC within spread, MAE worse by 0.1 within spread
    assert v.loc[("C1", "CCI"), "verdict"].startswith("inconclusive")
    # ft vs w/o ft: Top I ACC +0.5 within spread, MAE equal mean 1.55 vs 1.6 -> better but within spread
    assert v.loc[("C3", "Top I"), "better_beyond_spread"] == 0


def test_a_single_seed_has_no_spread_and_no_verdict_beyond_it():
    s = _summary([("Random", "T", "ACC", [50]), ("Top I", "T", "ACC", [90]), ("CCI", "T", "ACC", [10])])
    assert s["std"].isna().all()
    v = verdicts(s).set_index(["claim", "method"])
    assert v.loc[("C1", "Top I"), "better"] == 1 and v.loc[("C1", "Top I"), "verdict"].startswith("inconclusive")


@pytest.fixture
def tiny_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_RUNS", str(tmp_path))
    return get_preset("smoke", {"data.pool_limit": 40, "selection.budget": 3, "pretrain.epochs": 1,
                                "scoring.subset_size": 16, "downstream.train": 12, "downstream.test": 6,
                                "downstream.epochs": 1})


@pytest.mark.slow
def test_grid_runs_resumes_without_redoing_work_and_gives_the_same_metrics(tiny_grid, tmp_path):
    p = tiny_grid
    for modality in ("rna", "protein"):
        histories = pretrain_cells(p, modality, progress=False)
        assert sorted(histories) == sorted(c.name for c in CELLS if c.multiple != 0)
        first = evaluate_cells(p, modality, progress=False)
        root = tmp_path / "smoke" / "experiment" / modality
        stamps = {f: f.stat().st_mtime_ns for f in root.rglob("*") if f.is_file()}
        pretrain_cells(p, modality, progress=False)
        again = evaluate_cells(p, modality, progress=False)
        assert {f: f.stat().st_mtime_ns for f in root.rglob("*") if f.is_file()} == stamps
        pd.testing.assert_frame_equal(first, again)
        (root / "cci" / "metrics_seed0.csv").unlink()                      # recomputed from scratch: identical
        pd.testing.assert_frame_equal(first, evaluate_cells(p, modality, progress=False))
        idx = np.load(root / "random_10x" / "coreset" / "indices.npy")
        assert len(idx) == 30 and len(set(idx)) == 30


def test_experiment_cli_bad_preset_is_one_line_exit_2(cli):
    status, out, err = cli("experiment", "--preset", "huge", "--modality", "rna")
    assert status == 2 and err.count("\n") == 1 and "unknown preset 'huge'" in err


def test_a_grid_folder_refuses_another_presets_settings(tiny_grid, cli):
    from corelib.errors import InputError

    experiment.check_settings(tiny_grid, "rna")
    experiment.check_settings(tiny_grid.override(seeds=(0, 1)), "rna")   # more seeds: more files, same grid
    with pytest.raises(InputError, match="other settings \\(selection.budget\\)"):
        experiment.check_settings(tiny_grid.override({"selection.budget": 5}), "rna")


def test_a_given_reference_checkpoint_scores_the_pool_and_is_the_full_pool_row(tiny_grid, tmp_path):
    import torch

    from corelib.models import build_model, save_checkpoint

    ref = save_checkpoint(build_model("rna", "tiny", seed=11), tmp_path / "released.pt")
    histories = pretrain_cells(tiny_grid, "rna", progress=False, reference=ref)
    assert "Full pool" not in histories and not (tmp_path / "smoke" / "reference").exists()
    full = experiment.cell_model(CELLS[-1], tiny_grid, "rna", reference=ref)
    assert all(torch.equal(a, b) for a, b in zip(full.parameters(), build_model("rna", "tiny", seed=11).parameters()))
    import json
    meta = json.loads((tmp_path / "smoke" / "scores" / "rna_ft" / "scores.json").read_text())
    assert str(ref) in json.dumps(meta)


def test_experiment_on_a_missing_paper_corpus_is_one_line_and_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CORELIB_RUNS", str(tmp_path))
    status, out, err = cli("experiment", "--preset", "paper", "--modality", "rna")
    assert status == 2 and err.count("\n") == 1 and "rnacentral" in err
    assert not (tmp_path / "paper").exists()
