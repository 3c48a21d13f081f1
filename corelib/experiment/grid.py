"""The paper's experiment grid (Section 4, Tables 1-3): coresets by each method, pretrained from scratch
and evaluated downstream over seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from corelib.config import Preset
from corelib.experiment.claims import summarize
from corelib.layout import RunLayout


@dataclass(frozen=True)
class Cell:
    """One row of Tables 1-3."""

    name: str
    method: str | None      # selection method; None for Raw and the full-pool reference
    multiple: int           # budget multiple (0: no pretraining, -1: the whole pool)
    finetune: bool | None   # scores with (True) or without (False) the subset fine-tune

CELLS = [
    Cell("Raw", None, 0, None),
    Cell("Random", "random", 1, None),
    Cell("Random 10x", "random", 10, None),
    Cell("Top I (w/o ft)", "topk", 1, False),
    Cell("CCI (w/o ft)", "cci", 1, False),
    Cell("Top I", "topk", 1, True),
    Cell("CCI", "cci", 1, True),
    Cell("Full pool", None, -1, None),
]

REFERENCE = "Full pool"


def experiment_dir(preset: Preset, modality: str) -> Path:
    """runs/<preset>/experiment/<modality>/."""
    return RunLayout(preset).experiment(modality)


def _pool(preset: Preset, modality: str):
    from corelib.data.tokens import count_pool

    fasta = RunLayout(preset).pool(modality)
    return fasta, count_pool(fasta, modality, preset.data.pool_limit)


def cell_size(cell: Cell, preset: Preset, n_pool: int) -> int:
    """Sequences a cell pretrains on (the budget, 10x the budget, or the whole pool; capped at the pool)."""
    from corelib.selection.methods import resolve_budget

    if cell.multiple == 0:
        return 0
    if cell.multiple < 0:
        return n_pool
    return min(n_pool, cell.multiple * resolve_budget(n_pool, preset.selection.budget))


def reference_model(preset: Preset, modality: str, reference=None) -> Path:
    """The Full pool row's model: a given checkpoint (e.g. RNA-FM's .pth), else runs/<preset>/reference/<modality>/model.pt."""
    return Path(reference) if reference else RunLayout(preset).reference_model(modality)


def _select(cell: Cell, preset: Preset, modality: str, fasta, n_pool: int, device, progress, reference=None) -> np.ndarray:
    """Pool indices of a cell's coreset, written once to <cell>/coreset/ (Section 3.3)."""
    from corelib.influence.scoring import ensure_scores
    from corelib.selection.files import read_coreset, read_scores, write_coreset
    from corelib.selection.registry import select_indices

    out = RunLayout(preset).coreset(modality, cell.name)
    if (out / "indices.npy").exists():
        return read_coreset(out)[0]
    if cell.method == "random":
        scores = pd.DataFrame({"index": np.arange(n_pool), "score": np.zeros(n_pool)})
        meta_file = None
    else:
        score_dir = ensure_scores(preset, modality, finetune=cell.finetune, checkpoint=reference, device=device,
                                  progress=progress)
        scores, _ = read_scores(score_dir)
        meta_file = str(score_dir / "scores.parquet")
    budget = cell_size(cell, preset, n_pool)
    rows = select_indices(cell.method, scores, budget, seed=preset.seed, hard_cutoff=preset.selection.hard_cutoff,
                          strata=preset.selection.strata)
    if "id" not in scores.columns:   # random cells: only the ids are streamed, no pool table is held
        from itertools import islice

        from corelib.data.fasta import read_fasta

        scores = scores.assign(id=[rec.id for rec in islice(read_fasta(fasta, modality), n_pool)])
    manifest = {"method": cell.method, "cell": cell.name, "seed": preset.seed, "budget": int(len(rows)),
                "n_pool": int(n_pool), "hard_cutoff": preset.selection.hard_cutoff,
                "strata": preset.selection.strata,
                "scores_file": meta_file, "fasta": str(fasta), "modality": modality}
    write_coreset(out, scores, rows, fasta, modality, manifest)
    return read_coreset(out)[0]


def check_settings(preset: Preset, modality: str) -> None:
    """Record the preset a grid folder was made with; refuse to mix its files with another preset's."""

    from corelib.errors import InputError
    from corelib.files import record_settings

    path = experiment_dir(preset, modality) / "settings.json"
    diff = record_settings(path, preset.flat(), ignore=("seeds",))
    if diff:
        raise InputError(f"{path}: this grid was run with other settings ({', '.join(diff)}); "
                         f"delete {path.parent} or use the same preset")


def pretrain_cells(preset: Preset, modality: str, device=None, progress: bool = True,
                   reference=None) -> dict[str, pd.DataFrame]:
    """Select and pretrain every cell that needs it (A.3/A.4), resuming or skipping finished ones;
    returns the pretraining loss history of each cell. `reference`: a checkpoint that scores the pool and
    is the Full pool row (RNA-FM / ESM); by default one is pretrained on the pool."""
    from corelib.training.pretrain import ensure_pretrained, pretrain_pool

    fasta, n_pool = _pool(preset, modality)   # a missing corpus is reported before anything is written
    check_settings(preset, modality)
    histories = {}
    for cell in CELLS:
        if cell.multiple == 0:
            continue
        if cell.multiple < 0:
            if reference is None:
                ref = ensure_pretrained(fasta, modality, RunLayout(preset).reference(modality), preset,
                                        device=device, progress=progress)
                histories[cell.name] = pd.read_csv(ref.with_name("history.csv"))
            continue
        out = RunLayout(preset).cell(modality, cell.name)
        idx = _select(cell, preset, modality, fasta, n_pool, device, progress, reference)
        if not (out / "model.pt").exists():
            pretrain_pool(fasta, modality, out, preset, indices=idx, device=device, progress=progress)
        histories[cell.name] = pd.read_csv(out / "history.csv")
    return histories


def cell_model(cell: Cell, preset: Preset, modality: str, reference=None):
    """The encoder of a cell: untrained (Raw), the reference model, or the cell's pretrained model."""
    from corelib.models.checkpoints import load_checkpoint
    from corelib.models.masked_lm import build_model

    if cell.multiple == 0:
        return build_model(modality, preset.model, seed=preset.seed)
    if cell.multiple < 0:
        return load_checkpoint(reference_model(preset, modality, reference), modality)
    return load_checkpoint(RunLayout(preset).cell(modality, cell.name) / "model.pt", modality)


def evaluate_cells(preset: Preset, modality: str, device=None, progress: bool = True, reference=None) -> pd.DataFrame:
    """Downstream metrics of every cell and seed (B.3), one file per cell and seed, skipping finished ones;
    returns long rows (cell, data_size, task, metric, seed, value)."""
    from tqdm import tqdm

    from corelib.evaluation.tasks import evaluate_encoder
    from corelib.runtime import choose_device

    device = choose_device(device)
    _, n_pool = _pool(preset, modality)
    check_settings(preset, modality)
    frames = []
    jobs = [(cell, seed) for cell in CELLS for seed in preset.seeds]
    for cell, seed in tqdm(jobs, desc=f"evaluate {modality}", disable=not progress):
        path = RunLayout(preset).cell(modality, cell.name) / f"metrics_seed{seed}.csv"
        if not path.exists():
            df = evaluate_encoder(cell_model(cell, preset, modality, reference), modality, preset, seed=seed, device=device)
            path.parent.mkdir(parents=True, exist_ok=True)
            df.to_csv(path, index=False)
        frames.append(pd.read_csv(path).assign(cell=cell.name, data_size=cell_size(cell, preset, n_pool)))
    return pd.concat(frames, ignore_index=True)


def run_experiment(preset: Preset, modality: str, device=None, progress: bool = True) -> pd.DataFrame:
    """The whole grid for one modality: pretrain every cell, evaluate every cell and seed; returns `summarize`."""
    pretrain_cells(preset, modality, device=device, progress=progress)
    return summarize(evaluate_cells(preset, modality, device=device, progress=progress))


def pretraining_summary(histories: dict[str, pd.DataFrame], entropy: float | None = None) -> pd.DataFrame:
    """Per cell: steps, sequences and real tokens seen, wall seconds, tokens per second, the final loss
    (mean of the last tenth of the steps) and, with `entropy`, how far it is below the residue-frequency
    entropy (the loss of a model that learned only how often each residue occurs)."""
    rows = []
    for name, h in histories.items():
        tail = h["loss"].iloc[-max(1, len(h) // 10):]
        row = {"cell": name, "steps": len(h), "sequences": int(h["sequences"].sum()), "tokens": int(h["tokens"].sum()),
               "seconds": float(h["seconds"].sum()), "tokens_per_s": float(h["tokens"].sum() / max(h["seconds"].sum(), 1e-9)),
               "final_loss": float(tail.mean())}
        if entropy is not None:
            row["below_unigram"] = entropy - row["final_loss"]
        rows.append(row)
    return pd.DataFrame(rows)
