"""corelib.experiment: the grid of Tables 1-3 (cells, sizes, the held-out slice no arm trains on, seeds that vary
pretraining, masks, order, draws and D_sub alike for every arm, resumable files per cell and seed) and its
command line. The evaluation layer is replaced by small fakes here (its own tests cover it)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from corelib.config import get_preset
from corelib.evaluation.intrinsic import HELDOUT_MASK_SEED
from corelib.experiment import GridRun, summarize, verdicts
from corelib.experiment import grid as experiment
from corelib.experiment import heldout as held_mod
from corelib.experiment.grid import CELLS, cell_size, cells
from corelib.layout import slug


def test_cell_names_sizes_and_folders():
    assert [c.name for c in CELLS] == ["Raw", "Random", "Top I", "CCI", "Top I (residues)", "CCI (residues)",
                                       "Top I (w/o ft)", "CCI (w/o ft)", "Top I (w/o ft, residues)",
                                       "CCI (w/o ft, residues)", "Top I per token", "Loss top-k", "Random 10x",
                                       "Random 10x (same steps)", "Full pool"]
    assert slug("Top I (w/o ft)") == "top_i_wo_ft" and slug("Random 10x") == "random_10x"
    assert slug("CCI (w/o ft, residues)") == "cci_wo_ft_residues"
    p = get_preset("smoke")
    assert [cell_size(c, p, 256) for c in CELLS] == [0] + [24] * 11 + [240, 240, 256]
    by = {c.name: c for c in CELLS}
    assert {n for n, c in by.items() if c.budget == "residues"} == {"Top I (residues)", "CCI (residues)",
                                                                    "Top I (w/o ft, residues)", "CCI (w/o ft, residues)"}
    assert {n for n, c in by.items() if c.seeds == "draws"} == {"Top I (w/o ft)", "CCI (w/o ft)",
                                                                "Top I (w/o ft, residues)", "CCI (w/o ft, residues)"}
    ten = by["Random 10x"]
    assert cell_size(ten, p.override({"selection.budget": 0.5}), 100) == 100   # 10 x 50 capped at the pool
    assert [c.protocol for c in CELLS if c.name.startswith("Random 10x")] == ["epochs", "steps"]


def test_the_pruning_curve_cells_of_a_preset():
    # budgets 1x, 3x, 10x of Random / Top I / CCI; above 1x under the curve's protocol; a curve arm that is also
    # C2's 10x random arm is one cell
    p = get_preset("smoke", {"grid.budgets": (3, 10), "grid.curve_protocol": "steps"})
    names = [c.name for c in cells(p)]
    assert names[:10] == ["Raw", "Random", "Top I", "CCI", "Random 3x (same steps)", "Top I 3x (same steps)",
                          "CCI 3x (same steps)", "Random 10x (same steps)", "Top I 10x (same steps)",
                          "CCI 10x (same steps)"]
    assert names.count("Random 10x (same steps)") == 1 and "Random 10x" in names and names[-1] == "Full pool"
    by = {c.name: c for c in cells(p)}
    assert (by["CCI 3x (same steps)"].multiple, by["CCI 3x (same steps)"].protocol) == (3, "steps")
    epochs = [c.name for c in cells(p.override({"grid.curve_protocol": "epochs"}))]
    assert "Top I 3x" in epochs and epochs.count("Random 10x") == 1 and "Random 10x (same steps)" in epochs


def test_heldout_clusters_by_hand():
    # whole clusters, in the order of their first-keyed member (sha256("heldout:" + id)); per source 5% rounded up,
    # < 20 sequences: none, at most 300; a cluster larger than 50 never held out
    ids = [f"a{i}" for i in range(41)] + [f"b{i}" for i in range(19)] + [f"c{i}" for i in range(60)]
    sources = ["A"] * 41 + ["B"] * 19 + ["C"] * 60
    clusters = [i // 2 for i in range(41)] + [100 + i for i in range(19)] + [200] * 60   # pairs; singles; one big
    evaluated, excluded = held_mod.choose_heldout(ids, sources, clusters)
    key = held_mod.heldout_key
    firsts = sorted((min((k for k in range(41) if k // 2 == c), key=lambda k: key(ids[k])) for c in range(21)),
                    key=lambda k: key(ids[k]))[:3]                               # ceil(0.05 * 41) = 3 clusters of A
    assert evaluated.tolist() == sorted(firsts)
    assert excluded.tolist() == sorted(k for k in range(41) if k // 2 in {f // 2 for f in firsts})
    assert held_mod.quota(10_000) == 300 and held_mod.quota(19) == 0 and held_mod.quota(20) == 1
    order = np.random.default_rng(0).permutation(len(ids))                       # the pool's order does not matter
    again, _ = held_mod.choose_heldout([ids[k] for k in order], [sources[k] for k in order],
                                       [clusters[k] for k in order])
    assert sorted(ids[order[k]] for k in again) == sorted(ids[k] for k in evaluated)


# ----------------------------------------------------------------------------- the grid with fakes
class Fakes:
    """Stand-ins for pretraining, scoring and evaluation that record what they were asked to do."""

    def __init__(self):
        self.pretrain, self.scoring, self.evaluations, self.heldout_calls = [], [], [], []

    def pretrain_pool(self, fasta, modality, out_dir, preset, model=None, indices=None, device=None, progress=True,
                      **_):
        from corelib.models import build_model, save_checkpoint

        out_dir.mkdir(parents=True, exist_ok=True)
        self.pretrain.append({"out": out_dir, "seed": preset.seed, "indices": np.asarray(indices),
                              "steps": _.get("steps"), "epochs": _.get("epochs")})
        save_checkpoint(build_model(modality, "tiny", seed=preset.seed), out_dir / "model.pt")
        pd.DataFrame({"loss": [3.0, 2.9], "sequences": [1, 1], "tokens": [10, 10], "seconds": [0.1, 0.1]}).to_csv(
            out_dir / "history.csv", index=False)

    def run_scoring(self, fasta, modality, out, preset, args, device=None, progress=True):
        from corelib.data.fasta import read_fasta
        from corelib.selection.files import write_scores

        finetune, exclude = args.finetune, args.exclude
        self.scoring.append({"out": out, "seed": preset.seed, "finetune": finetune, "checkpoint": str(args.checkpoint),
                             "exclude": None if exclude is None else set(np.asarray(exclude).tolist())})
        ids = [r.id for _, r in zip(range(preset.data.pool_limit), read_fasta(fasta, modality))]
        rng = np.random.default_rng([preset.seed, finetune])
        df = pd.DataFrame({"id": ids, "index": np.arange(len(ids)), "length": 50, "score": rng.random(len(ids)),
                           "loss": rng.random(len(ids)), "token_score": rng.random(len(ids))})
        write_scores(df, {"seed": preset.seed, "finetune": finetune}, out)
        return out / "scores.parquet"

    def evaluation(self):
        def evaluate_encoder(encoder, modality, preset, seed=0, device="cpu", tasks=None):
            self.evaluations.append(seed)
            level = float(next(encoder.parameters()).detach().sum())
            correct = (np.arange(8) + seed + int(abs(level) * 1000)) % 3 == 0
            items = pd.DataFrame({"task": "T", "item": [f"t{i}" for i in range(8)], "num": 100.0 * correct,
                                  "den": 1.0, "seed": seed})
            metrics = pd.DataFrame([{"task": "T", "metric": "ACC", "value": items["num"].mean(), "seed": seed,
                                     "primary": True, "protocol": "probe"}])
            return SimpleNamespace(metrics=metrics, items=items)

        def evaluate_baselines(modality, preset, seed=0):
            items = pd.DataFrame({"task": "T", "item": [f"t{i}" for i in range(8)], "num": 50.0, "den": 1.0,
                                  "seed": seed})
            return SimpleNamespace(metrics=pd.DataFrame([{"task": "T", "metric": "ACC", "value": 50.0, "seed": seed,
                                                          "primary": True, "protocol": "composition"}]), items=items)

        def heldout_mlm_loss(encoder, tokens, families, vocab, mask_seed, mask_prob, device="cpu", ids=None):
            self.heldout_calls.append(mask_seed)
            n = np.array([len(t) for t in tokens], dtype=float)
            return pd.DataFrame({"item": ids, "family": families, "num": 2.5 * n, "den": n})

        return SimpleNamespace(evaluate_encoder=evaluate_encoder, evaluate_baselines=evaluate_baselines,
                               heldout_mlm_loss=heldout_mlm_loss, BASELINE_CELL="Composition",
                               TASKS={"rna": [SimpleNamespace(name="T", primary="ACC")]})


@pytest.fixture
def fakes(monkeypatch):
    import corelib.influence.scoring
    import corelib.training.pretrain

    f = Fakes()
    monkeypatch.setattr(corelib.training.pretrain, "pretrain_pool", f.pretrain_pool)
    monkeypatch.setattr(corelib.influence.scoring, "run_scoring", f.run_scoring)
    monkeypatch.setattr(experiment, "_evaluation", f.evaluation)
    return f


@pytest.fixture
def tiny_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_RUNS", str(tmp_path))
    return get_preset("smoke", {"data.pool_limit": 60, "selection.budget": 3, "pretrain.epochs": 1,
                                "scoring.subset_size": 16, "downstream.train": 12, "downstream.test": 6,
                                "downstream.epochs": 1, "seeds": (0, 1, 2)})


def test_seeds_vary_everything_but_the_selection_and_no_arm_sees_the_heldout_slice(tiny_grid, fakes, tmp_path):
    p = tiny_grid
    run = GridRun(p, "rna", progress=False)
    histories = run.pretrain()
    root = tmp_path / "smoke" / "experiment" / "rna"
    held = pd.read_csv(root / "heldout" / "heldout.csv")
    assert len(held) >= 1 and json.loads((root / "heldout" / "manifest.json").read_text())["rule"] == held_mod.RULE
    heldout = set(np.load(root / "heldout" / "excluded.npy").tolist())
    assert set(held["index"]) <= heldout
    # the reference: once, at the preset's seed, on the pool less the held-out clusters
    ref = [c for c in fakes.pretrain if c["out"] == root / "full_pool"]
    assert len(ref) == 1 and ref[0]["seed"] == p.seed and set(ref[0]["indices"]) == set(range(60)) - heldout
    # one scoring run per draw (3 draws: seed s selects from draw s) and variant, all from the reference model
    assert sorted((c["seed"], c["finetune"]) for c in fakes.scoring) == [(s, f) for s in (0, 1, 2) for f in (False, True)]
    assert {c["checkpoint"] for c in fakes.scoring} == {str(root / "full_pool" / "model.pt")}
    assert {c["out"].name for c in fakes.scoring} == {f"draw{s}_{v}" for s in (0, 1, 2) for v in ("ft", "noft")}
    assert all(c["exclude"] == heldout for c in fakes.scoring)   # D_sub never draws a held-out sequence
    # every pruned cell at every seed pretrained with that seed, never on a held-out sequence
    cells = [c for c in fakes.pretrain if c["out"].parent != root]
    assert sorted((c["out"].parent.name, c["seed"]) for c in cells) == sorted(
        (slug(c.name), s) for c in CELLS if c.multiple > 0 for s in (0, 1, 2))
    assert all(c["out"].name == f"seed{c['seed']}" and not set(c["indices"]) & heldout for c in cells)
    draws = [tuple(np.load(root / "random" / f"seed{s}" / "coreset" / "indices.npy")) for s in (0, 1, 2)]
    assert len(set(draws)) == 3                                         # the random draw follows the seed
    assert len(np.load(root / "random_10x" / "seed1" / "coreset" / "indices.npy")) == 30
    # the notebooks' view: each cell's history at the preset's seed
    assert sorted(histories) == sorted(c.name for c in CELLS if c.multiple != 0)
    assert run.histories()["seed"].nunique() == 4    # seeds 0-2 and the reference (-1)

    grid = run.evaluate()
    for cell in CELLS:
        for s in (0, 1, 2):
            assert all((root / slug(cell.name) / f"seed{s}" / f).exists() for f in ("metrics.csv", "items.csv", "heldout.csv"))
    assert sorted(fakes.evaluations) == sorted([0, 1, 2] * len(CELLS))
    assert set(fakes.heldout_calls) == {HELDOUT_MASK_SEED}                # the same masks for every arm and seed
    assert set(grid.heldout["item"]) == set(held["id"].astype(str))
    assert set(grid.baselines["row"]) == {"Composition"} and grid.seeds == (0, 1, 2)
    manifest = json.loads((root / "heldout" / "manifest.json").read_text())
    assert grid.entropy["pooled"] == pytest.approx(manifest["entropy"]["all"])
    weights = manifest["weights"]                       # the overall floor weights the sources by their pool share
    assert grid.entropy["all"] == pytest.approx(sum(w * manifest["entropy"][s] for s, w in weights.items())
                                                / sum(weights.values()))

    # resumable: nothing is redone, nothing rewritten, the same grid comes back
    stamps = {f: f.stat().st_mtime_ns for f in root.rglob("*") if f.is_file()}
    n_pre, n_score, n_eval = len(fakes.pretrain), len(fakes.scoring), len(fakes.evaluations)
    again = GridRun(p, "rna", progress=False)
    again.pretrain()
    again = again.evaluate()
    assert (len(fakes.pretrain), len(fakes.scoring), len(fakes.evaluations)) == (n_pre, n_score, n_eval)
    assert {f: f.stat().st_mtime_ns for f in root.rglob("*") if f.is_file()} == stamps
    pd.testing.assert_frame_equal(grid.items, again.items)
    pd.testing.assert_frame_equal(verdicts(grid), verdicts(again))
    (root / "cci" / "seed1" / "items.csv").unlink()                     # recomputed from scratch: identical
    pd.testing.assert_frame_equal(grid.items, GridRun(p, "rna", progress=False).evaluate().items)
    s = summarize(grid)
    assert set(s.loc[s["primary"], "method"]) == {"Composition", *[c.name for c in CELLS]}
    # data_size: the budget, and for a residue-budget arm the mean size of the sets its seeds drew (read here)
    size = s.drop_duplicates("method").set_index("method")["data_size"]
    for cell in (c for c in CELLS if c.multiple > 0):   # Raw and Full pool draw no set
        drawn = [len(np.load(root / slug(cell.name) / f"seed{s}" / "coreset" / "indices.npy")) for s in (0, 1, 2)]
        if cell.budget == "residues":
            assert size[cell.name] == round(np.mean(drawn)), cell.name
        else:
            assert size[cell.name] == drawn[0] == drawn[2], cell.name


def test_experiment_cli_writes_tables_and_says_why_there_are_no_verdicts(tiny_grid, fakes, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_FIGURES", str(tmp_path / "figures"))
    status, out, err = cli("experiment", "--preset", "smoke", "--modality", "rna", "--quiet", "--limit", "60",
                           "--selection-budget", "3", "--pretrain-epochs", "1", "--subset-size", "16")
    assert status == 0, err
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == ["05_smoke_pruning_curve_rna.png", "05_smoke_rna_grid.json", "05_smoke_rna_heldout.csv",
                     "05_smoke_rna_heldout.md", "05_smoke_rna_items.csv.gz", "05_smoke_rna_metrics.csv.gz",
                     "05_smoke_rna_pretraining.csv", "05_smoke_rna_pretraining.md", "05_smoke_rna_table.csv",
                     "05_smoke_rna_table.md", "05_smoke_rna_verdicts.csv", "05_smoke_rna_verdicts.md"]
    # the fake held-out loss (2.5 nats) is above the residues' entropy: the gate line says no verdicts, and why
    gate = [line for line in out.splitlines() if line.startswith("rna: gate: ")]
    assert len(gate) == 1 and "no verdicts: " in gate[0] and "needed: at least 0.1 below" in gate[0]
    assert (tmp_path / "figures" / "05_smoke_rna_verdicts.md").read_text().count("no verdicts") == 1   # said once


def test_simulate_null_prints_the_rates(cli):
    status, out, err = cli("experiment", "--simulate-null", "20", "--preset", "smoke", "--modality", "protein")
    assert status == 0, err
    assert "false-supported rate: " in out and "power at a 1-SD effect: " in out and "SD = " in out
    assert "Bin 80" in out
    status, _, err = cli("experiment", "--simulate-null", "0", "--modality", "rna")
    assert status == 2 and err.count("\n") == 1


@pytest.mark.slow
def test_the_real_grid_runs_resumes_and_gives_the_same_files(tiny_grid, tmp_path, monkeypatch):
    # real tiny models for reference, scoring and pretraining; the evaluation is faked
    f = Fakes()
    monkeypatch.setattr(experiment, "_evaluation", f.evaluation)
    p = tiny_grid.override({"seeds": (0, 1), "grid.scoring_draws": 2})
    first = GridRun(p, "rna", progress=False).run()
    root = tmp_path / "smoke" / "experiment" / "rna"
    stamps = {x: x.stat().st_mtime_ns for x in root.rglob("*") if x.is_file()}
    again = GridRun(p, "rna", progress=False).run()
    assert {x: x.stat().st_mtime_ns for x in root.rglob("*") if x.is_file()} == stamps
    pd.testing.assert_frame_equal(first.metrics, again.metrics)
    heldout = set(np.load(root / "heldout" / "excluded.npy").tolist())
    for s in (0, 1):
        for cell in ("random", "random_10x", "top_i_wo_ft", "cci_wo_ft", "top_i", "cci"):
            idx = np.load(root / cell / f"seed{s}" / "coreset" / "indices.npy")
            assert not set(idx) & heldout and len(set(idx)) == len(idx)
        meta = json.loads((root / "scores" / f"draw{s}_ft" / "scores.json").read_text())
        assert meta["seed"] == s
    assert len(np.load(root / "random_10x" / "seed0" / "coreset" / "indices.npy")) == 30


def test_one_scoring_draw_and_compute_matched_arms(tiny_grid, fakes, tmp_path):
    p = tiny_grid.override({"grid.scoring_draws": 1, "grid.budgets": (2,), "grid.curve_protocol": "steps",
                            "grid.reference_epochs": 2, "pretrain.batch_size": 2, "pretrain.epochs": 3})
    run = GridRun(p, "rna", progress=False)
    run.pretrain()
    root = tmp_path / "smoke" / "experiment" / "rna"
    # one scoring run per variant, draw 0, used by every seed's cells
    assert sorted((c["seed"], c["finetune"]) for c in fakes.scoring) == [(0, False), (0, True)]
    meta = json.loads((root / "cci" / "seed2" / "coreset" / "manifest.json").read_text())
    assert (meta["seed"], meta["scoring_draw"]) == (2, 0)
    # same-steps arms get the 1x arm's steps: 3 epochs x ceil(3 / 2) batches; the others train by epochs
    assert len(run.train_indices) == 60 - len(run.heldout.excluded) and run.steps == 3 * 2
    steps = {(c["out"].parent.name, c["seed"]): c["steps"] for c in fakes.pretrain if c["out"].parent != root}
    assert steps[("random_2x_same_steps", 1)] == steps[("random_10x_same_steps", 0)] == 6
    assert steps[("random_10x", 0)] is None and steps[("top_i", 2)] is None
    assert [c["epochs"] for c in fakes.pretrain if c["out"] == root / "full_pool"] == [2]


def test_experiment_cli_bad_preset_is_one_line_exit_2(cli):
    status, out, err = cli("experiment", "--preset", "huge", "--modality", "rna")
    assert status == 2 and err.count("\n") == 1 and "unknown preset 'huge'" in err


def test_a_grid_folder_refuses_another_presets_settings(tiny_grid, cli):
    from corelib.errors import InputError

    check = lambda preset: GridRun(preset, "rna", progress=False).check_settings()  # noqa: E731
    check(tiny_grid)
    check(tiny_grid.override(seeds=(0, 1)))   # more seeds: more files, same grid
    with pytest.raises(InputError, match="other settings \\(selection.budget\\)"):
        check(tiny_grid.override({"selection.budget": 5}))
    # a folder recorded before the grid.* knobs existed: their default values are what it was run with
    path = GridRun(tiny_grid, "rna").layout.grid_settings("rna")
    old = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("grid.")}
    path.write_text(json.dumps({**old, "grid.retired_knob": 3}))   # and a knob since removed
    check(tiny_grid)
    with pytest.raises(InputError, match="other settings \\(grid.scoring_draws\\)"):
        check(tiny_grid.override({"grid.scoring_draws": 1}))


def test_a_given_reference_checkpoint_scores_the_pool_and_is_the_full_pool_row(tiny_grid, tmp_path):
    import torch

    from corelib.models import build_model, save_checkpoint

    ref = save_checkpoint(build_model("rna", "tiny", seed=11), tmp_path / "released.pt")
    p = tiny_grid.override(seeds=(0,))
    run = GridRun(p, "rna", progress=False, reference=ref)
    histories = run.pretrain()
    root = tmp_path / "smoke" / "experiment" / "rna"
    assert "Full pool" not in histories and not (tmp_path / "smoke" / "reference").exists()
    assert not (root / "full_pool" / "model.pt").exists()
    full = run.model(CELLS[-1], 0)
    assert all(torch.equal(a, b) for a, b in zip(full.parameters(), build_model("rna", "tiny", seed=11).parameters()))
    meta = json.loads((root / "scores" / "draw0_ft" / "scores.json").read_text())
    assert str(ref) in json.dumps(meta)


def test_experiment_on_a_missing_paper_corpus_is_one_line_and_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CORELIB_RUNS", str(tmp_path))
    status, out, err = cli("experiment", "--preset", "paper", "--modality", "rna")
    assert status == 2 and err.count("\n") == 1 and "rnacentral" in err
    assert not (tmp_path / "paper").exists()
