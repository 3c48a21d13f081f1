"""The paper's experiment grid (Section 4, Tables 1-3): coresets by each method, pretrained from scratch and
evaluated downstream and on a held-out slice, over seeds paired across arms. `GridRun` opens one preset's grid
for one modality once: its run layout, the pool's token store, the held-out slice, the reference model, the
score folders, every cell's files, and the report both the CLI and notebook 05 write.

Seed s sets, for every arm alike, the pretraining init, masks and data order and the Random and CCI draws; the
scores come from scoring draw s mod `grid.scoring_draws` (each draw its own D_sub, subset fine-tune and Fisher,
with and without the fine-tune). Arms compared at seed s share all of it and differ only in the selection. The
reference model (the Full pool row, and the model that scores the pool) is trained once at the preset's `seed`:
it stands in for a given pretrained RNA-FM / ESM-C. No arm trains on the held-out slice
(`corelib.experiment.heldout`). Paths: `corelib.layout.RunLayout` (the grid's section of its tree).

Every file is written once and skipped when present, so an interrupted grid resumes.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from corelib.config import Preset
from corelib.errors import InputError
from corelib.evaluation.baselines import BASELINE_CELL
from corelib.experiment.claims import LOWER_IS_BETTER, Grid, gate_line, summarize, verdicts
from corelib.experiment.heldout import Heldout, copies_in, ensure_heldout, heldout_windows, weighted_heldout
from corelib.files import atomic_write, record_settings
from corelib.layout import RunLayout
from corelib.rundir import open_run


@dataclass(frozen=True)
class Cell:
    """One row of Tables 1-3, or one point of the pruning-rate curve (Section 4)."""

    name: str
    method: str | None      # selection method; None for Raw and the full-pool reference
    multiple: int           # budget multiple (0: no pretraining, -1: the whole pool)
    finetune: bool | None   # scores with (True) or without (False) the subset fine-tune
    protocol: str = "epochs"   # epochs: pretrain.epochs over the set; steps: the optimiser steps of the 1x arm
    budget: str = "sequences"  # sequences: the budget's count; residues: the Random arm's residues at the seed
    seeds: str = "all"         # all: every grid seed; draws: one seed per scoring draw; extra: `grid.extra_seeds`


REFERENCE = "Full pool"
ARMS = (("Random", "random"), ("Top I", "topk"), ("CCI", "cci"))
FILES = ("metrics.csv", "items.csv", "heldout.csv")


def cells(preset: Preset) -> list[Cell]:
    """The grid's rows for a preset (Section 4): Raw; Random, Top I and CCI at every budget multiple of
    `grid.budgets` (the pruning-rate curve; above 1x trained under `grid.curve_protocol`); at the budget, Top I
    and CCI also at the Random arm's residues (C1 at equal residues), without the fine-tune at both budgets (C3),
    Top I on the per-token score and the loss top-k; the C2 random set (10x) under both protocols; the Full pool
    reference. The C1 arms and C2 at the same steps run at every seed, the C3 arms at one seed per scoring draw,
    the rest at `grid.extra_seeds` seeds."""
    steps = preset.grid.curve_protocol == "steps"
    if not all(isinstance(m, int) and m >= 1 for m in preset.grid.budgets):
        raise InputError(f"grid.budgets: {preset.grid.budgets!r} must be whole multiples of the budget, each >= 1")
    out = [Cell("Raw", None, 0, None)]
    for m in sorted({1, *preset.grid.budgets}):
        suffix = "" if m == 1 else f" {m}x" + (" (same steps)" if steps else "")
        out += [Cell(name + suffix, method, m, None if method == "random" else True,
                     "steps" if steps and m > 1 else "epochs", seeds="all" if m == 1 else "extra")
                for name, method in ARMS]
    out += [Cell("Top I (residues)", "topk", 1, True, budget="residues"),
            Cell("CCI (residues)", "cci", 1, True, budget="residues"),
            Cell("Top I (w/o ft)", "topk", 1, False, seeds="draws"), Cell("CCI (w/o ft)", "cci", 1, False, seeds="draws"),
            Cell("Top I (w/o ft, residues)", "topk", 1, False, budget="residues", seeds="draws"),
            Cell("CCI (w/o ft, residues)", "cci", 1, False, budget="residues", seeds="draws"),
            Cell("Top I per token", "topk-per-token", 1, True, seeds="extra"),
            Cell("Loss top-k", "loss-topk", 1, True, seeds="extra"),
            Cell("Random 10x", "random", 10, None, seeds="extra"),
            Cell("Random 10x (same steps)", "random", 10, None, "steps")]
    out.append(Cell(REFERENCE, None, -1, None))
    return list({c.name: c for c in out}.values())   # a curve arm may also be a C2 arm: one cell


CELLS = cells(Preset())   # the rows of a preset with the paper's single budget


def cell_size(cell: Cell, preset: Preset, n_pool: int) -> int:
    """Sequences a cell pretrains on (the budget, 10x the budget, or all `n_pool` candidates; capped at them)."""
    from corelib.selection.methods import resolve_budget

    if cell.multiple == 0:
        return 0
    if cell.multiple < 0:
        return n_pool
    return min(n_pool, cell.multiple * resolve_budget(n_pool, preset.selection.budget))


def _holding(stage):
    """A GridRun stage run holding the grid's folder (`open_run`: one run at a time; a finished grid on read-only
    media is only read)."""
    @functools.wraps(stage)
    def run(self, *args, **kwargs):
        with open_run(self.layout.experiment(self.modality), wait=self.wait, what="the grid folder", read_only_ok=True):
            return stage(self, *args, **kwargs)

    return run


def _evaluation():
    """The evaluation layer (a seam: tests put small fakes here)."""
    import corelib.evaluation as evaluation

    return evaluation


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


class GridRun:
    """One preset's grid for one modality (Section 4), opened once: `pretrain()`, `evaluate()` and `load()` read
    and write its files, `write_report()` its tables, curve and gate line. `reference`: a checkpoint that scores
    the pool and is the Full pool row (RNA-FM / ESM-C); by default one is pretrained on the pool less the held-out
    slice. A missing pool (the paper corpora) is one InputError before anything is written. `wait`: wait for
    another run writing the grid's folder instead of one line and exit status 2."""

    def __init__(self, preset: Preset, modality: str, reference=None, device=None, progress: bool = True,
                 wait: bool = False):
        from corelib.data.store import pool_size, token_store
        from corelib.runtime import choose_device

        self.preset, self.modality, self.progress = preset, modality, progress
        self.layout = RunLayout(preset)
        self.fasta = self.layout.pool(modality)
        self.store = token_store(self.fasta, modality, progress=False)
        self.n_pool = pool_size(self.store, preset.data.pool_limit)
        self.given_reference = Path(reference) if reference else None
        self.device = choose_device(device)
        self.wait = wait

    # ------------------------------------------------------------------ what the grid is
    @functools.cached_property
    def cells(self) -> list[Cell]:
        """The rows (`cells(preset)`)."""
        return cells(self.preset)

    def check_settings(self) -> None:
        """Record the preset the grid folder is made with; refuse to mix its files with another preset's."""
        path = self.layout.grid_settings(self.modality)
        diff = record_settings(path, self.preset.flat(), ignore=("seeds",), defaults=Preset().flat())
        if diff:
            raise InputError(f"{path}: this grid was run with other settings ({', '.join(diff)}); "
                             f"delete {path.parent} or use the same preset")

    @functools.cached_property
    def heldout(self) -> Heldout:
        """The held-out slice no arm trains on (chosen once, `corelib.experiment.heldout`)."""
        return ensure_heldout(self.layout.heldout(self.modality), self.fasta, self.modality, self.n_pool,
                              self.preset.data.max_tokens, self.preset.data.mask_prob,
                              cache_dir=self.store.folder.parent / "clusters", cache_key=self.store.meta["sha256"][:32])

    @functools.cached_property
    def train_indices(self) -> np.ndarray:
        """Pool indices every arm may train on: the pool less every held-out cluster and near copy."""
        return self.heldout.train_indices()

    def size(self, cell: Cell) -> int:
        """Sequences `cell` pretrains on (`cell_size` over the candidates)."""
        return cell_size(cell, self.preset, len(self.train_indices))

    def set_size(self, cell: Cell) -> int:
        """Sequences a cell's sets hold, as the tables' `data_size`: `size(cell)`, except for a residue-budget arm,
        whose sets are cut to the Random arm's residues: the mean over its drawn seeds (A.3)."""
        if cell.budget != "residues":
            return self.size(cell)
        drawn = [self.layout.coreset(self.modality, cell.name, s) / "manifest.json" for s in self.seeds_of(cell)]
        held = [json.loads(p.read_text())["budget"] for p in drawn if p.exists()]
        return int(round(float(np.mean(held)))) if held else self.size(cell)

    @functools.cached_property
    def steps(self) -> int:
        """Optimiser steps of the 1x arm (A.3): what every compute-matched ("same steps") arm is given."""
        from corelib.training.loop import total_steps

        return total_steps(self.preset.pretrain, self.size(Cell("Random", "random", 1, None)))

    def draw_of(self, seed: int) -> int:
        """The scoring draw whose scores the cells of seed `seed` select from (seed mod `grid.scoring_draws`)."""
        return seed % self.preset.grid.scoring_draws

    def seeds_of(self, cell: Cell) -> tuple[int, ...]:
        """The seeds a cell runs at: every grid seed, the first seed of each scoring draw (C3 arms), or the
        first `grid.extra_seeds` seeds (the curve above 1x and the secondary arms) (Section 4)."""
        seeds = tuple(self.preset.seeds)
        if cell.seeds == "draws":
            first = {}
            for s in seeds:
                first.setdefault(self.draw_of(s), s)
            return tuple(sorted(first.values()))
        if cell.seeds == "extra" and self.preset.grid.extra_seeds is not None:
            return seeds[: self.preset.grid.extra_seeds]
        return seeds

    def residues(self, indices) -> int:
        """Residues a set of pool sequences holds as pretraining reads them (each at most max_tokens - 2 per
        epoch) (A.3)."""
        lengths = self.store.lengths[np.asarray(indices, dtype=np.int64)]
        return int(np.minimum(lengths, self.preset.data.max_tokens - 2).sum())

    # ------------------------------------------------------------------ models and scores
    @functools.cached_property
    def reference(self) -> Path:
        """The Full pool row's checkpoint: the given one, or one pretrained once (at the preset's seed) on the pool
        less the held-out slice (`ensure_pretrained`)."""
        from corelib.training.pretrain import ensure_pretrained

        if self.given_reference is not None:
            return self.given_reference
        return ensure_pretrained(self.fasta, self.modality, self.layout.grid_reference(self.modality), self.preset,
                                 indices=self.train_indices, device=self.device, progress=self.progress,
                                 epochs=self.preset.grid.reference_epochs)

    def scores(self, finetune: bool, draw: int) -> Path:
        """The score folder of scoring draw `draw` (its D_sub, drawn outside the held-out slice, its masks and,
        with `finetune`, its subset fine-tune), scored by the reference (`ensure_scores`)."""
        from corelib.influence.scoring import ensure_scores

        return ensure_scores(self.preset.override(seed=draw), self.modality, finetune, checkpoint=self.reference,
                             device=self.device, progress=self.progress,
                             out=self.layout.grid_scores(self.modality, draw, finetune), exclude=self.heldout.excluded)

    def coreset(self, cell: Cell, seed: int) -> np.ndarray:
        """Pool indices of a cell's coreset at seed `seed`, drawn from the pool less the held-out slice and written
        once to its coreset folder (Section 3.3); the scores are those of scoring draw `draw_of(seed)`."""
        from corelib.selection.files import read_coreset, read_scores, write_coreset
        from corelib.selection.strategies import select_indices

        out = self.layout.coreset(self.modality, cell.name, seed)
        if (out / "indices.npy").exists():
            return read_coreset(out)[0]
        train = self.train_indices
        if cell.method == "random":
            ids = np.asarray(self.store.ids(0, self.n_pool), dtype=object)
            scores, scores_file = pd.DataFrame({"id": ids[train], "index": train, "score": np.zeros(len(train))}), None
        else:
            folder = self.scores(cell.finetune, self.draw_of(seed))
            scores, _ = read_scores(folder)
            scores = scores[~scores["index"].isin(self.heldout.excluded)].reset_index(drop=True)   # never a candidate
            scores_file = str(folder / "scores.parquet")
        p = self.preset.selection
        budget, tokens = self.size(cell), None
        if cell.budget == "residues":   # the Random arm's residues at this seed, each sequence counted as read
            budget, tokens = None, self.residues(self.coreset(Cell("Random", "random", 1, None), seed))
            scores = scores.assign(length=np.minimum(scores["length"], self.preset.data.max_tokens - 2))
        rows = select_indices(cell.method, scores, budget, seed=seed, hard_cutoff=p.hard_cutoff, strata=p.strata,
                              budget_tokens=tokens)
        chosen = scores["index"].to_numpy()[rows]
        manifest = {"method": cell.method, "cell": cell.name, "seed": seed, "budget": int(len(rows)),
                    "residues": self.residues(chosen), "budget_residues": tokens,
                    "heldout_copies": copies_in(self.store, self.heldout, chosen, self.preset.data.max_tokens),
                    "scoring_draw": self.draw_of(seed), "n_pool": int(self.n_pool), "candidates": int(len(scores)),
                    "heldout": int(len(self.heldout)), "hard_cutoff": p.hard_cutoff, "strata": p.strata,
                    "scores_file": scores_file, "fasta": str(self.fasta), "modality": self.modality}
        write_coreset(out, scores, rows, self.fasta, self.modality, manifest)
        return read_coreset(out)[0]

    def model(self, cell: Cell, seed: int):
        """The encoder of a cell at a seed: untrained (Raw, initialised by the seed), the reference model (the
        same at every seed), or the cell's model pretrained at that seed."""
        from corelib.models.checkpoints import load_checkpoint
        from corelib.models.masked_lm import build_model

        if cell.multiple == 0:
            return build_model(self.modality, self.preset.model, seed=seed)
        if cell.multiple < 0:
            return load_checkpoint(self.reference, self.modality)
        return load_checkpoint(self.layout.seed_dir(self.modality, cell.name, seed) / "model.pt", self.modality)

    # ------------------------------------------------------------------ the stages
    @_holding
    def pretrain(self) -> dict[str, pd.DataFrame]:
        """Select and pretrain every cell at every seed that needs it (A.3/A.4), resuming or skipping finished
        ones; returns each cell's pretraining loss history at the preset's `seed` (all: `histories()`)."""
        from corelib.training.pretrain import pretrain_pool

        self.check_settings()
        self.reference   # noqa: B018 - trained before the cells that its scores select
        for seed in self.preset.seeds:
            p = self.preset.override(seed=seed)
            for cell in self.cells:
                if cell.multiple <= 0 or seed not in self.seeds_of(cell):
                    continue
                out = self.layout.seed_dir(self.modality, cell.name, seed)
                idx = self.coreset(cell, seed)
                if not (out / "model.pt").exists():
                    pretrain_pool(self.fasta, self.modality, out, p, indices=idx, device=self.device,
                                  progress=self.progress, steps=self.steps if cell.protocol == "steps" else None)
        long = self.histories()
        first = long[long["seed"].isin([self._history_seed(), -1])]
        return {name: part.drop(columns=["cell", "seed"]).reset_index(drop=True)
                for name, part in first.groupby("cell", sort=False)}

    def _history_seed(self) -> int:
        return self.preset.seed if self.preset.seed in self.preset.seeds else self.preset.seeds[0]

    def histories(self) -> pd.DataFrame:
        """Every pretraining run's loss history: [cell, seed, ...history.csv columns] (the reference: seed -1)."""
        frames = []
        ref = self.layout.grid_reference(self.modality) / "history.csv"
        if self.given_reference is None and ref.exists():
            frames.append(pd.read_csv(ref).assign(cell=REFERENCE, seed=-1))
        for seed in self.preset.seeds:
            for cell in self.cells:
                path = self.layout.seed_dir(self.modality, cell.name, seed) / "history.csv"
                if cell.multiple > 0 and path.exists():
                    frames.append(pd.read_csv(path).assign(cell=cell.name, seed=seed))
        if not frames:
            return pd.DataFrame(columns=["cell", "seed"])
        out = pd.concat(frames, ignore_index=True)
        order = {c.name: k for k, c in enumerate(self.cells)}
        out = out.sort_values(["cell", "seed"], key=lambda s: s.map(order) if s.name == "cell" else s, kind="stable")
        return out[["cell", "seed", *[c for c in out.columns if c not in ("cell", "seed")]]].reset_index(drop=True)

    @functools.cached_property
    def heldout_tokens(self) -> list[np.ndarray]:
        """Token arrays of the evaluated held-out sequences (their fixed windows), in the held-out table's order."""
        return heldout_windows(self.store, self.heldout, self.preset.data.max_tokens)

    def _evaluate_one(self, model, seed: int, folder: Path) -> None:
        """A cell's files at one seed: downstream metrics and items, held-out MLM loss per held-out sequence."""
        from corelib.data.tokens import get_vocab
        from corelib.evaluation.intrinsic import HELDOUT_MASK_SEED

        ev = _evaluation()
        preset = self.preset.override(seed=seed)
        if not ((folder / "metrics.csv").exists() and (folder / "items.csv").exists()):
            result = ev.evaluate_encoder(model, self.modality, preset, seed=seed, device=self.device)
            self._write_result(folder, result, seed)
        if not (folder / "heldout.csv").exists():
            table = self.heldout.table
            loss = ev.heldout_mlm_loss(model, self.heldout_tokens, table["source"].astype(str).tolist(),
                                       get_vocab(self.modality), mask_seed=HELDOUT_MASK_SEED,
                                       mask_prob=preset.data.mask_prob, device=self.device,
                                       ids=table["id"].astype(str).tolist())
            _write_csv(folder / "heldout.csv", loss.assign(seed=seed))

    @staticmethod
    def _write_result(folder: Path, result, seed: int) -> None:
        _write_csv(folder / "items.csv", result.items.assign(seed=seed))
        _write_csv(folder / "metrics.csv", result.metrics.assign(seed=seed))

    @_holding
    def evaluate(self) -> Grid:
        """Downstream metrics and test items (B.3), and the held-out MLM loss, of every cell and seed, plus the
        composition baseline rows per seed; one file each, skipping finished ones. Returns the `Grid`."""
        from tqdm import tqdm

        self.check_settings()
        ev = _evaluation()
        for seed in self.preset.seeds:
            folder = self.layout.baselines(self.modality, seed)
            if not ((folder / "metrics.csv").exists() and (folder / "items.csv").exists()):
                self._write_result(folder, ev.evaluate_baselines(self.modality, self.preset.override(seed=seed), seed),
                                   seed)
        jobs = [(cell, seed) for seed in self.preset.seeds for cell in self.cells if seed in self.seeds_of(cell)]
        for cell, seed in tqdm(jobs, desc=f"evaluate {self.modality}", disable=not self.progress):
            folder = self.layout.seed_dir(self.modality, cell.name, seed)
            if not all((folder / f).exists() for f in FILES):
                self._evaluate_one(self.model(cell, seed), seed, folder)
        return self.load()

    def run(self) -> Grid:
        """The whole grid: pretrain every cell, evaluate every cell and seed (each resumable)."""
        self.pretrain()
        return self.evaluate()

    def load(self) -> Grid:
        """Every cell's and seed's files read into a `Grid` (files not yet written are absent)."""
        return self._load()[0]

    def _load(self) -> tuple[Grid, pd.DataFrame]:
        """The `Grid`, and its held-out rows before the pool-share weighting (for the audit bundle)."""
        sizes = {c.name: self.set_size(c) for c in self.cells}
        metrics, items, losses, base_m, base_i = [], [], [], [], []
        read = lambda p: pd.read_csv(p, dtype={"item": str})  # noqa: E731 - items are names, whatever they look like
        for seed in self.preset.seeds:
            for cell in self.cells:
                folder = self.layout.seed_dir(self.modality, cell.name, seed)
                if (folder / "metrics.csv").exists():
                    metrics.append(pd.read_csv(folder / "metrics.csv").assign(cell=cell.name, data_size=sizes[cell.name]))
                if (folder / "items.csv").exists():
                    items.append(read(folder / "items.csv").assign(cell=cell.name))
                if (folder / "heldout.csv").exists():
                    losses.append(read(folder / "heldout.csv").assign(cell=cell.name))
            folder = self.layout.baselines(self.modality, seed)
            if (folder / "metrics.csv").exists():
                base_m.append(pd.read_csv(folder / "metrics.csv"))
                base_i.append(read(folder / "items.csv"))
        cat = lambda frames, cols: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)  # noqa: E731
        metrics = cat(metrics, ["cell", "data_size", "seed", "task", "metric", "value", "primary", "protocol"])
        base_metrics = cat(base_m, ["seed", "task", "metric", "value", "primary", "protocol"])
        base_items = cat(base_i, ["seed", "task", "item", "num", "den"])
        ev = _evaluation()
        if len(base_metrics):
            base_metrics, base_items = _baseline_rows(base_metrics, base_items, BASELINE_CELL)
        lower = {t.name: t.primary in LOWER_IS_BETTER for t in ev.TASKS.get(self.modality, [])}
        raw = cat(losses, ["cell", "seed", "item", "family", "num", "den"])
        losses, entropy = weighted_heldout(raw, self.heldout.entropy, self.heldout.weights)
        grid = Grid(self.modality, tuple(self.preset.seeds), metrics,
                    cat(items, ["cell", "seed", "task", "item", "num", "den"]), losses, base_metrics, base_items,
                    entropy, lower, [c.name for c in self.cells], sizes,
                    {s: self.draw_of(s) for s in self.preset.seeds},
                    frozenset(c.name for c in self.cells if c.finetune is not None))
        return grid, raw

    # ------------------------------------------------------------------ the report
    def write_report(self, summary: pd.DataFrame | None = None) -> list[Path]:
        """The grid's tables (figures/05_<preset>_<modality>_{table,heldout,verdicts,pretraining}.*), its
        pruning-rate curve and, last, the gate line as a one-line text file; returns the paths written. The
        CLI's `experiment` and notebook 05 both call this."""
        import matplotlib.pyplot as plt

        from corelib.experiment.audit import write_bundle
        from corelib.layout import figures_dir
        from corelib.report.figures import plot_pruning_curve
        from corelib.report.output import save_table, savefig
        from corelib.report.tables import save_experiment_tables

        grid, raw = self._load()
        summary = summarize(grid) if summary is None else summary
        name, m = self.preset.name, self.modality
        paths = save_experiment_tables(summary, verdicts(summary), name, m)
        paths += write_bundle(summary.attrs["grid"], raw, {"entropy": self.heldout.entropy,
                                                           "weights": self.heldout.weights}, figures_dir(), name)
        paths += save_table(self.accounting(), f"05_{m}_pretraining", name)   # machine-free columns only
        fig = plot_pruning_curve(summary, f"{m}, {name} preset", self.preset.grid.curve_protocol)
        paths.append(savefig(fig, f"05_pruning_curve_{m}", name))
        plt.close(fig)   # written, not shown: notebook 05 shows the file under its own heading
        return paths

    def accounting(self) -> pd.DataFrame:
        """What each arm trained on, averaged over its seeds (A.3, Section 4): seeds, sequences and residues of
        its set (each sequence counted as pretraining reads it, at most max_tokens - 2 per epoch), optimiser steps,
        residues read over the whole run, the final training loss, and how many evaluated held-out windows its set
        still holds an exact or near copy of (the split's audit: 0 expected)."""
        rows = []
        for cell in self.cells:
            if cell.multiple == 0 or (cell.multiple < 0 and self.given_reference is not None):
                continue
            seeds = [-1] if cell.multiple < 0 else list(self.seeds_of(cell))
            for seed in seeds:
                folder = self.layout.grid_reference(self.modality) if seed < 0 else \
                    self.layout.seed_dir(self.modality, cell.name, seed)
                if not (folder / "history.csv").exists():
                    continue
                h = pd.read_csv(folder / "history.csv")
                if seed < 0:
                    idx = self.train_indices
                    copies = copies_in(self.store, self.heldout, idx, self.preset.data.max_tokens)
                    sequences, residues = len(idx), self.residues(idx)
                else:
                    meta = json.loads((folder / "coreset" / "manifest.json").read_text())
                    sequences, residues = meta["budget"], meta.get("residues", np.nan)
                    copies = meta.get("heldout_copies", {"exact": np.nan, "near": np.nan})
                tail = h["loss"].iloc[-max(1, len(h) // 10):]
                rows.append({"cell": cell.name, "budget": cell.budget, "sequences": sequences, "residues": residues,
                             "steps": len(h), "residues_read": int((h["tokens"] - 2 * h["sequences"]).sum()),
                             "final_loss": float(tail.mean()), "heldout_exact_copies": copies["exact"],
                             "heldout_near_copies": copies["near"]})
        if not rows:
            return pd.DataFrame(columns=["cell", "seeds"])
        table = pd.DataFrame(rows)
        out = table.groupby(["cell", "budget"], sort=False).agg(
            seeds=("steps", "size"), sequences=("sequences", "mean"), residues=("residues", "mean"),
            steps=("steps", "mean"), residues_read=("residues_read", "mean"), final_loss=("final_loss", "mean"),
            heldout_exact_copies=("heldout_exact_copies", "max"), heldout_near_copies=("heldout_near_copies", "max"))
        return out.reset_index()

    def gate_line(self, summary: pd.DataFrame | None = None) -> str:
        """One line: the Random arm's held-out loss against the unigram entropy, and whether verdicts follow."""
        return gate_line(summarize(self.load()) if summary is None else summary)


def _baseline_rows(metrics: pd.DataFrame, items: pd.DataFrame, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The baseline rows: one row `name` (each task's composition baseline), split by protocol only where a
    task has several baselines."""
    protocols = metrics[metrics["primary"].astype(bool)].groupby("task")["protocol"].nunique()
    several = set(protocols[protocols > 1].index)
    rows = [f"{name} ({p})" if t in several else name for t, p in zip(metrics["task"], metrics["protocol"])]
    metrics = metrics.assign(row=rows)
    if "protocol" in items.columns:
        items = items.assign(row=[f"{name} ({p})" if t in several else name
                                  for t, p in zip(items["task"], items["protocol"])])
    else:
        items = items.assign(row=name)
    return metrics, items


def pretraining_summary(histories: dict[str, pd.DataFrame], entropy: float | None = None) -> pd.DataFrame:
    """Per cell: steps, sequences and real tokens seen, wall seconds, tokens per second, the final loss
    (mean of the last tenth of the steps) and, with `entropy`, the final loss minus the residue-frequency
    entropy (the loss of a model that learned only how often each residue occurs; negative = learned more)."""
    rows = []
    for name, h in histories.items():
        tail = h["loss"].iloc[-max(1, len(h) // 10):]
        row = {"cell": name, "steps": len(h), "sequences": int(h["sequences"].sum()), "tokens": int(h["tokens"].sum()),
               "seconds": float(h["seconds"].sum()), "tokens_per_s": float(h["tokens"].sum() / max(h["seconds"].sum(), 1e-9)),
               "final_loss": float(tail.mean())}
        if entropy is not None:   # nats per masked token; negative: better than residue frequencies alone
            row["entropy"] = entropy
            row["loss_minus_entropy"] = row["final_loss"] - entropy
        rows.append(row)
    return pd.DataFrame(rows)
