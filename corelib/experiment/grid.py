"""The paper's experiment grid (Section 4, Tables 1-3): coresets by each method, pretrained from scratch
and evaluated downstream and on a held-out slice, over seeds that vary what matters, paired across arms.

Seed s sets, for every arm alike, the pretraining init, masks and data order, the Random and CCI draws and
D_sub (the scoring run's fine-tune and Fisher subset: one score folder per seed); arms compared at seed s share
all of it and differ only in the selection. The reference model (the Full pool row, and the model that scores
the pool) is trained once at the preset's `seed`: it stands in for a given pretrained RNA-FM / ESM-C. No arm
trains on the held-out slice (`corelib.experiment.heldout`).

experiment/<modality>/
    settings.json                       the preset (the `seeds` aside: more seeds, more files)
    heldout/                            the held-out slice (heldout.csv, manifest.json)
    scores/seed<S>_{ft,noft}/           the scoring run of seed S (with / without the subset fine-tune)
    full_pool/model.pt, history.csv     the reference, pretrained on the pool less the held-out slice
    <cell>/seed<S>/                     coreset/, model.pt, history.csv (pruned cells), and for every cell
                                        metrics.csv, items.csv, heldout.csv
    baselines/seed<S>/                  metrics.csv, items.csv of the composition baseline rows
Every file is written once and skipped when present, so an interrupted grid resumes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from corelib.config import Preset
from corelib.experiment.claims import LOWER_IS_BETTER, Grid, summarize
from corelib.experiment.heldout import HELDOUT_MASK_SEED, Heldout, ensure_heldout, heldout_tokens
from corelib.files import atomic_write
from corelib.layout import RunLayout


@dataclass(frozen=True)
class Cell:
    """One row of Tables 1-3, or one point of the pruning-rate curve (Section 4)."""

    name: str
    method: str | None      # selection method; None for Raw and the full-pool reference
    multiple: int           # budget multiple (0: no pretraining, -1: the whole pool)
    finetune: bool | None   # scores with (True) or without (False) the subset fine-tune
    protocol: str = "epochs"   # epochs: pretrain.epochs over the set; steps: the optimiser steps of the 1x arm


REFERENCE = "Full pool"
ARMS = (("Random", "random"), ("Top I", "topk"), ("CCI", "cci"))


def cells(preset: Preset) -> list[Cell]:
    """The grid's rows for a preset (Section 4): Raw; Random, Top I and CCI at every budget multiple of
    `grid.budgets` (the pruning-rate curve; above 1x trained under `grid.curve_protocol`); at the budget, Top I
    and CCI without the fine-tune (C3), Top I on the per-token score and the loss top-k; the C2 random set
    (10x) under both protocols; the Full pool reference."""
    steps = preset.grid.curve_protocol == "steps"
    if not all(isinstance(m, int) and m >= 1 for m in preset.grid.budgets):
        from corelib.errors import InputError

        raise InputError(f"grid.budgets: {preset.grid.budgets!r} must be whole multiples of the budget, each >= 1")
    out = [Cell("Raw", None, 0, None)]
    for m in sorted({1, *preset.grid.budgets}):
        suffix = "" if m == 1 else f" {m}x" + (" (same steps)" if steps else "")
        out += [Cell(name + suffix, method, m, None if method == "random" else True, "steps" if steps and m > 1
                     else "epochs") for name, method in ARMS]
    out += [Cell("Top I (w/o ft)", "topk", 1, False), Cell("CCI (w/o ft)", "cci", 1, False),
            Cell("Top I per token", "topk-per-token", 1, True), Cell("Loss top-k", "loss-topk", 1, True),
            Cell("Random 10x", "random", 10, None), Cell("Random 10x (same steps)", "random", 10, None, "steps")]
    out.append(Cell(REFERENCE, None, -1, None))
    return list({c.name: c for c in out}.values())   # a curve arm may also be a C2 arm: one cell


CELLS = cells(Preset())   # the rows of a preset with the paper's single budget
FILES = ("metrics.csv", "items.csv", "heldout.csv")


def _evaluation():
    """The evaluation layer (a seam: tests put small fakes here)."""
    import corelib.evaluation as evaluation

    return evaluation


def experiment_dir(preset: Preset, modality: str) -> Path:
    """runs/<preset>/experiment/<modality>/."""
    return RunLayout(preset).experiment(modality)


def seed_dir(preset: Preset, modality: str, cell: str, seed: int) -> Path:
    """One cell's files at one seed: <cell>/seed<S>/."""
    return RunLayout(preset).cell(modality, cell) / f"seed{seed}"


def score_dir(preset: Preset, modality: str, seed: int, finetune: bool) -> Path:
    """The scoring run of one seed: scores/seed<S>_{ft,noft}/ in the grid folder."""
    return experiment_dir(preset, modality) / "scores" / f"seed{seed}_{'ft' if finetune else 'noft'}"


def _pool(preset: Preset, modality: str):
    from corelib.data.store import pool_size, token_store

    fasta = RunLayout(preset).pool(modality)   # the pool is parsed once, into its token store
    return fasta, pool_size(token_store(fasta, modality, progress=False), preset.data.pool_limit)


def heldout_slice(preset: Preset, modality: str, fasta=None, n_pool: int | None = None) -> Heldout:
    """The grid's held-out slice (chosen once, `corelib.experiment.heldout`)."""
    if fasta is None or n_pool is None:
        fasta, n_pool = _pool(preset, modality)
    return ensure_heldout(experiment_dir(preset, modality) / "heldout", fasta, modality, n_pool,
                          preset.data.max_tokens)


def cell_steps(preset: Preset, n_pool: int) -> int:
    """Optimiser steps of the 1x arm (A.3): the budget every compute-matched ("same steps") arm is given."""
    from corelib.training.loop import total_steps

    return total_steps(preset.pretrain, cell_size(Cell("Random", "random", 1, None), preset, n_pool))


def cell_size(cell: Cell, preset: Preset, n_pool: int) -> int:
    """Sequences a cell pretrains on (the budget, 10x the budget, or all `n_pool` candidates; capped at them)."""
    from corelib.selection.methods import resolve_budget

    if cell.multiple == 0:
        return 0
    if cell.multiple < 0:
        return n_pool
    return min(n_pool, cell.multiple * resolve_budget(n_pool, preset.selection.budget))


def reference_model(preset: Preset, modality: str, reference=None) -> Path:
    """The Full pool row's model: a given checkpoint (e.g. RNA-FM's .pth), else full_pool/model.pt of the grid."""
    return Path(reference) if reference else RunLayout(preset).cell(modality, REFERENCE) / "model.pt"


def check_settings(preset: Preset, modality: str) -> None:
    """Record the preset a grid folder was made with; refuse to mix its files with another preset's."""

    from corelib.errors import InputError
    from corelib.files import record_settings

    path = experiment_dir(preset, modality) / "settings.json"
    diff = record_settings(path, preset.flat(), ignore=("seeds",), defaults=Preset().flat())
    if diff:
        raise InputError(f"{path}: this grid was run with other settings ({', '.join(diff)}); "
                         f"delete {path.parent} or use the same preset")


def _reference(preset: Preset, modality: str, fasta, held: Heldout, reference, device, progress) -> Path:
    """The given reference checkpoint, or one pretrained once (at the preset's seed) on the pool less the
    held-out slice."""
    from corelib.training.pretrain import pretrain_pool

    path = reference_model(preset, modality, reference)
    if reference is None and not path.exists():
        pretrain_pool(fasta, modality, path.parent, preset, indices=held.train_indices(), device=device,
                      progress=progress, epochs=preset.grid.reference_epochs)
    return path


def _scores(preset: Preset, modality: str, fasta, finetune: bool, checkpoint, device, progress,
            exclude=None) -> Path:
    """The score folder of seed `preset.seed` (its D_sub, drawn outside `exclude`, masks and, with `finetune`,
    its subset fine-tune)."""
    from corelib.influence.scoring import run_scoring

    out = score_dir(preset, modality, preset.seed, finetune)
    if not (out / "scores.parquet").exists():
        run_scoring(fasta, modality, out, preset, checkpoint=checkpoint, finetune=finetune, device=device,
                    progress=progress, exclude=exclude)
    return out


class _PoolIds:
    """The pool's record ids, streamed once when a random cell first needs them."""

    def __init__(self, fasta, modality: str, n_pool: int):
        self.fasta, self.modality, self.n_pool, self._ids = fasta, modality, n_pool, None

    def __getitem__(self, idx) -> np.ndarray:
        if self._ids is None:
            from itertools import islice

            from corelib.data.fasta import read_fasta

            self._ids = np.array([r.id for r in islice(read_fasta(self.fasta, self.modality), self.n_pool)], dtype=object)
        return self._ids[idx]


def _select(cell: Cell, preset: Preset, modality: str, fasta, held: Heldout, ids: _PoolIds, checkpoint, device,
            progress, scoring_seed: int | None = None) -> np.ndarray:
    """Pool indices of a cell's coreset at seed `preset.seed`, drawn from the pool less the held-out slice and
    written once to <cell>/seed<S>/coreset/ (Section 3.3); the scores are those of seed `scoring_seed`
    (default: the same seed)."""
    from corelib.selection.files import read_coreset, read_scores, write_coreset
    from corelib.selection.registry import select_indices

    out = seed_dir(preset, modality, cell.name, preset.seed) / "coreset"
    if (out / "indices.npy").exists():
        return read_coreset(out)[0]
    train = held.train_indices()
    if cell.method == "random":
        scores = pd.DataFrame({"id": ids[train], "index": train, "score": np.zeros(len(train))})
        meta_file = None
    else:
        scorer = preset if scoring_seed is None else preset.override(seed=scoring_seed)
        folder = _scores(scorer, modality, fasta, cell.finetune, checkpoint, device, progress, exclude=held.indices)
        scores, _ = read_scores(folder)
        scores = scores[~scores["index"].isin(held.indices)].reset_index(drop=True)   # never a candidate
        meta_file = str(folder / "scores.parquet")
    budget = cell_size(cell, preset, len(train))
    rows = select_indices(cell.method, scores, budget, seed=preset.seed, hard_cutoff=preset.selection.hard_cutoff,
                          strata=preset.selection.strata)
    manifest = {"method": cell.method, "cell": cell.name, "seed": preset.seed, "budget": int(len(rows)),
                "scoring_seed": preset.seed if scoring_seed is None else scoring_seed,
                "n_pool": int(held.n_pool), "candidates": int(len(scores)), "heldout": int(len(held)),
                "hard_cutoff": preset.selection.hard_cutoff, "strata": preset.selection.strata,
                "scores_file": meta_file, "fasta": str(fasta), "modality": modality}
    write_coreset(out, scores, rows, fasta, modality, manifest)
    return read_coreset(out)[0]


def _history_seed(preset: Preset) -> int:
    return preset.seed if preset.seed in preset.seeds else preset.seeds[0]


def pretrain_cells(preset: Preset, modality: str, device=None, progress: bool = True,
                   reference=None) -> dict[str, pd.DataFrame]:
    """Select and pretrain every cell at every seed that needs it (A.3/A.4), resuming or skipping finished
    ones; returns each cell's pretraining loss history at the preset's `seed` (every seed's:
    `pretraining_histories`). `reference`: a checkpoint that scores the pool and is the Full pool row
    (RNA-FM / ESM); by default one is pretrained on the pool less the held-out slice."""
    from corelib.training.pretrain import pretrain_pool

    fasta, n_pool = _pool(preset, modality)   # a missing corpus is reported before anything is written
    check_settings(preset, modality)
    held = heldout_slice(preset, modality, fasta, n_pool)
    ref = _reference(preset, modality, fasta, held, reference, device, progress)
    ids = _PoolIds(fasta, modality, n_pool)
    steps = cell_steps(preset, len(held.train_indices()))
    for seed in preset.seeds:
        p = preset.override(seed=seed)
        scoring_seed = preset.seed if preset.grid.scores == "shared" else seed
        for cell in cells(preset):
            if cell.multiple <= 0:
                continue
            out = seed_dir(preset, modality, cell.name, seed)
            idx = _select(cell, p, modality, fasta, held, ids, ref, device, progress, scoring_seed)
            if not (out / "model.pt").exists():
                pretrain_pool(fasta, modality, out, p, indices=idx, device=device, progress=progress,
                              steps=steps if cell.protocol == "steps" else None)
    long = pretraining_histories(preset, modality, reference)
    first = long[long["seed"].isin([_history_seed(preset), -1])]
    return {name: part.drop(columns=["cell", "seed"]).reset_index(drop=True)
            for name, part in first.groupby("cell", sort=False)}


def pretraining_histories(preset: Preset, modality: str, reference=None) -> pd.DataFrame:
    """Every pretraining run's loss history: [cell, seed, ...history.csv columns] (the reference: seed -1)."""
    frames = []
    if reference is None and (RunLayout(preset).cell(modality, REFERENCE) / "history.csv").exists():
        frames.append(pd.read_csv(RunLayout(preset).cell(modality, REFERENCE) / "history.csv")
                      .assign(cell=REFERENCE, seed=-1))
    for seed in preset.seeds:
        for cell in cells(preset):
            path = seed_dir(preset, modality, cell.name, seed) / "history.csv"
            if cell.multiple > 0 and path.exists():
                frames.append(pd.read_csv(path).assign(cell=cell.name, seed=seed))
    if not frames:
        return pd.DataFrame(columns=["cell", "seed"])
    out = pd.concat(frames, ignore_index=True)
    order = {c.name: k for k, c in enumerate(cells(preset))}
    out = out.sort_values(["cell", "seed"], key=lambda s: s.map(order) if s.name == "cell" else s, kind="stable")
    return out[["cell", "seed", *[c for c in out.columns if c not in ("cell", "seed")]]].reset_index(drop=True)


def cell_model(cell: Cell, preset: Preset, modality: str, reference=None, seed: int | None = None):
    """The encoder of a cell at a seed: untrained (Raw, initialised by the seed), the reference model (the
    same at every seed), or the cell's model pretrained at that seed."""
    from corelib.models.checkpoints import load_checkpoint
    from corelib.models.masked_lm import build_model

    seed = preset.seed if seed is None else seed
    if cell.multiple == 0:
        return build_model(modality, preset.model, seed=seed)
    if cell.multiple < 0:
        return load_checkpoint(reference_model(preset, modality, reference), modality)
    return load_checkpoint(seed_dir(preset, modality, cell.name, seed) / "model.pt", modality)


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def _evaluate_one(model, preset: Preset, modality: str, seed: int, folder: Path, held: Heldout, tokens, device):
    """A cell's files at one seed: downstream metrics and items, held-out MLM loss per held-out sequence."""
    from corelib.data.tokens import get_vocab

    ev = _evaluation()
    if not ((folder / "metrics.csv").exists() and (folder / "items.csv").exists()):
        result = ev.evaluate_encoder(model, modality, preset, seed=seed, device=device)
        _write_csv(folder / "items.csv", result.items.assign(seed=seed))
        _write_csv(folder / "metrics.csv", result.metrics.assign(seed=seed))
    if not (folder / "heldout.csv").exists():
        loss = ev.heldout_mlm_loss(model, tokens(), held.table["source"].astype(str).tolist(), get_vocab(modality),
                                   mask_seed=HELDOUT_MASK_SEED, mask_prob=preset.data.mask_prob, device=device,
                                   ids=held.table["id"].astype(str).tolist())
        _write_csv(folder / "heldout.csv", loss.assign(seed=seed))


def evaluate_cells(preset: Preset, modality: str, device=None, progress: bool = True, reference=None) -> Grid:
    """Downstream metrics and test items (B.3), and the held-out MLM loss, of every cell and seed, plus the
    composition baseline rows per seed; one file each, skipping finished ones. Returns the `Grid`."""
    from tqdm import tqdm

    from corelib.runtime import choose_device

    device = choose_device(device)
    fasta, n_pool = _pool(preset, modality)
    check_settings(preset, modality)
    held = heldout_slice(preset, modality, fasta, n_pool)
    cache = {}

    def tokens():
        if "t" not in cache:
            cache["t"] = heldout_tokens(fasta, modality, held, preset.data.max_tokens)
        return cache["t"]

    ev = _evaluation()
    jobs = [(cell, seed) for seed in preset.seeds for cell in cells(preset)]
    for seed in preset.seeds:
        folder = experiment_dir(preset, modality) / "baselines" / f"seed{seed}"
        if not ((folder / "metrics.csv").exists() and (folder / "items.csv").exists()):
            result = ev.evaluate_baselines(modality, preset.override(seed=seed), seed)
            _write_csv(folder / "items.csv", result.items.assign(seed=seed))
            _write_csv(folder / "metrics.csv", result.metrics.assign(seed=seed))
    for cell, seed in tqdm(jobs, desc=f"evaluate {modality}", disable=not progress):
        folder = seed_dir(preset, modality, cell.name, seed)
        if all((folder / f).exists() for f in FILES):
            continue
        model = cell_model(cell, preset, modality, reference, seed)
        _evaluate_one(model, preset.override(seed=seed), modality, seed, folder, held, tokens, device)
    return load_grid(preset, modality, reference)


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


def load_grid(preset: Preset, modality: str, reference=None) -> Grid:
    """Read every cell's and seed's files of a grid folder into a `Grid` (files not yet written are absent)."""
    fasta, n_pool = _pool(preset, modality)
    held = heldout_slice(preset, modality, fasta, n_pool)
    n_train = n_pool - len(held)
    rows = cells(preset)
    sizes = {c.name: cell_size(c, preset, n_train) for c in rows}
    metrics, items, losses, base_m, base_i = [], [], [], [], []
    read = lambda p: pd.read_csv(p, dtype={"item": str})  # noqa: E731 - items are names, whatever they look like
    for seed in preset.seeds:
        for cell in rows:
            folder = seed_dir(preset, modality, cell.name, seed)
            if (folder / "metrics.csv").exists():
                metrics.append(pd.read_csv(folder / "metrics.csv").assign(cell=cell.name, data_size=sizes[cell.name]))
            if (folder / "items.csv").exists():
                items.append(read(folder / "items.csv").assign(cell=cell.name))
            if (folder / "heldout.csv").exists():
                losses.append(read(folder / "heldout.csv").assign(cell=cell.name))
        folder = experiment_dir(preset, modality) / "baselines" / f"seed{seed}"
        if (folder / "metrics.csv").exists():
            base_m.append(pd.read_csv(folder / "metrics.csv"))
            base_i.append(read(folder / "items.csv"))
    cat = lambda frames, cols: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)  # noqa: E731
    metrics = cat(metrics, ["cell", "data_size", "seed", "task", "metric", "value", "primary", "protocol"])
    base_metrics = cat(base_m, ["seed", "task", "metric", "value", "primary", "protocol"])
    base_items = cat(base_i, ["seed", "task", "item", "num", "den"])
    ev = _evaluation()
    if len(base_metrics):
        base_metrics, base_items = _baseline_rows(base_metrics, base_items, getattr(ev, "BASELINE_CELL", "Baseline"))
    lower = {}
    try:
        for task in ev.TASKS[modality]:
            flag = getattr(task, "lower_is_better", None)
            lower[task.name] = bool(flag) if flag is not None else getattr(task, "primary", "") in LOWER_IS_BETTER
    except (AttributeError, KeyError):
        pass
    return Grid(modality, tuple(preset.seeds), metrics, cat(items, ["cell", "seed", "task", "item", "num", "den"]),
                cat(losses, ["cell", "seed", "item", "family", "num", "den"]), base_metrics, base_items,
                dict(held.entropy), lower, [c.name for c in rows], sizes)


def run_experiment(preset: Preset, modality: str, device=None, progress: bool = True) -> pd.DataFrame:
    """The whole grid for one modality: pretrain every cell, evaluate every cell and seed; returns `summarize`."""
    pretrain_cells(preset, modality, device=device, progress=progress)
    return summarize(evaluate_cells(preset, modality, device=device, progress=progress))


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
