"""The paper's experiment grid (Section 4, Tables 1-3): coresets by each method, pretrained from scratch,
evaluated downstream over seeds, and the claims C1-C3 read off the measured numbers.

Cells: Raw (untrained), Random at the budget, Random at 10x the budget, Top I and CCI with and without
the subset fine-tune before scoring, and the reference model trained on the whole pool (the RNA-FM /
ESM-C row). Everything lives under runs/<preset>/experiment/<modality>/<cell>/: coreset/, model.pt,
history.csv (pretraining loss), metrics_seed<k>.csv. A rerun skips whatever is already there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Preset, run_dir


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


def slug(name: str) -> str:
    """Folder name of a cell: 'Top I (w/o ft)' -> 'top_i_wo_ft'."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]+", "_", name.lower().replace("w/o", "wo"))).strip("_")


def experiment_dir(preset: Preset, modality: str) -> Path:
    """runs/<preset>/experiment/<modality>/."""
    return run_dir(preset.name) / "experiment" / modality


def _pool(preset: Preset, modality: str):
    from .data import count_pool
    from .sources import dataset_path

    fasta = dataset_path(preset.rna_pool if modality == "rna" else preset.protein_pool)
    return fasta, count_pool(fasta, modality, preset.pool_limit)


def cell_size(cell: Cell, preset: Preset, n_pool: int) -> int:
    """Sequences a cell pretrains on (the budget, 10x the budget, or the whole pool; capped at the pool)."""
    from .selection import resolve_budget

    if cell.multiple == 0:
        return 0
    if cell.multiple < 0:
        return n_pool
    return min(n_pool, cell.multiple * resolve_budget(n_pool, preset.budget))


def reference_model(preset: Preset, modality: str, reference=None) -> Path:
    """The Full pool row's model: a given checkpoint (e.g. RNA-FM's .pth), else runs/<preset>/reference/<modality>/model.pt."""
    return Path(reference) if reference else run_dir(preset.name) / "reference" / modality / "model.pt"


def _select(cell: Cell, preset: Preset, modality: str, fasta, n_pool: int, device, progress, reference=None) -> np.ndarray:
    """Pool indices of a cell's coreset, written once to <cell>/coreset/ (Section 3.3)."""
    from .coreset import read_coreset, read_scores, select_indices, write_coreset
    from .scoring import ensure_scores

    out = experiment_dir(preset, modality) / slug(cell.name) / "coreset"
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
    rows = select_indices(cell.method, scores, budget, seed=preset.seed, hard_cutoff=preset.hard_cutoff,
                          strata=preset.strata)
    if "id" not in scores.columns:   # random cells: only the ids are streamed, no pool table is held
        from itertools import islice

        from .data import read_fasta

        scores = scores.assign(id=[rec.id for rec in islice(read_fasta(fasta, modality), n_pool)])
    manifest = {"method": cell.method, "cell": cell.name, "seed": preset.seed, "budget": int(len(rows)),
                "n_pool": int(n_pool), "hard_cutoff": preset.hard_cutoff, "strata": preset.strata,
                "scores_file": meta_file, "fasta": str(fasta), "modality": modality}
    write_coreset(out, scores, rows, fasta, modality, manifest)
    return read_coreset(out)[0]


def check_settings(preset: Preset, modality: str) -> None:
    """Record the preset a grid folder was made with; refuse to mix its files with another preset's."""
    import dataclasses

    from .errors import InputError
    from .files import record_settings

    path = experiment_dir(preset, modality) / "settings.json"
    diff = record_settings(path, dataclasses.asdict(preset), ignore=("seeds",))
    if diff:
        raise InputError(f"{path}: this grid was run with other settings ({', '.join(diff)}); "
                         f"delete {path.parent} or use the same preset")


def pretrain_cells(preset: Preset, modality: str, device=None, progress: bool = True,
                   reference=None) -> dict[str, pd.DataFrame]:
    """Select and pretrain every cell that needs it (A.3/A.4), resuming or skipping finished ones;
    returns the pretraining loss history of each cell. `reference`: a checkpoint that scores the pool and
    is the Full pool row (RNA-FM / ESM); by default one is pretrained on the pool."""
    from .pretrain import ensure_pretrained, pretrain_pool

    fasta, n_pool = _pool(preset, modality)   # a missing corpus is reported before anything is written
    check_settings(preset, modality)
    root = experiment_dir(preset, modality)
    histories = {}
    for cell in CELLS:
        if cell.multiple == 0:
            continue
        if cell.multiple < 0:
            if reference is None:
                ref = ensure_pretrained(fasta, modality, run_dir(preset.name) / "reference" / modality, preset,
                                        device=device, progress=progress)
                histories[cell.name] = pd.read_csv(ref.with_name("history.csv"))
            continue
        out = root / slug(cell.name)
        idx = _select(cell, preset, modality, fasta, n_pool, device, progress, reference)
        if not (out / "model.pt").exists():
            pretrain_pool(fasta, modality, out, preset, indices=idx, device=device, progress=progress)
        histories[cell.name] = pd.read_csv(out / "history.csv")
    return histories


def cell_model(cell: Cell, preset: Preset, modality: str, reference=None):
    """The encoder of a cell: untrained (Raw), the reference model, or the cell's pretrained model."""
    from .models import build_model, load_checkpoint

    if cell.multiple == 0:
        return build_model(modality, preset.model, seed=preset.seed)
    if cell.multiple < 0:
        return load_checkpoint(reference_model(preset, modality, reference), modality)
    return load_checkpoint(experiment_dir(preset, modality) / slug(cell.name) / "model.pt", modality)


def evaluate_cells(preset: Preset, modality: str, device=None, progress: bool = True, reference=None) -> pd.DataFrame:
    """Downstream metrics of every cell and seed (B.3), one file per cell and seed, skipping finished ones;
    returns long rows (cell, data_size, task, metric, seed, value)."""
    from tqdm import tqdm

    from .config import choose_device
    from .evaluate import evaluate_encoder

    device = choose_device(device)
    _, n_pool = _pool(preset, modality)
    check_settings(preset, modality)
    root = experiment_dir(preset, modality)
    frames = []
    jobs = [(cell, seed) for cell in CELLS for seed in preset.seeds]
    for cell, seed in tqdm(jobs, desc=f"evaluate {modality}", disable=not progress):
        path = root / slug(cell.name) / f"metrics_seed{seed}.csv"
        if not path.exists():
            df = evaluate_encoder(cell_model(cell, preset, modality, reference), modality, preset, seed=seed, device=device)
            path.parent.mkdir(parents=True, exist_ok=True)
            df.to_csv(path, index=False)
        frames.append(pd.read_csv(path).assign(cell=cell.name, data_size=cell_size(cell, preset, n_pool)))
    return pd.concat(frames, ignore_index=True)


LOWER_IS_BETTER = {"MAE", "MSE", "RMSE"}


def summarize(long: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per cell, task and metric, in the columns `report` expects."""
    out = (long.groupby(["cell", "data_size", "task", "metric"], sort=False)["value"]
           .agg(value="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else np.nan, seeds="size")
           .reset_index())
    out["lower_is_better"] = out["metric"].isin(LOWER_IS_BETTER)
    return out.rename(columns={"cell": "method"})


CLAIMS = {
    "C1": ("an influence-guided coreset beats random at the same budget", ["Top I", "CCI"], "Random"),
    "C2": ("it beats a random set 10x larger", ["Top I", "CCI"], "Random 10x"),
    "C3": ("fine-tuning before scoring beats w/o ft", ["Top I", "CCI"], None),
}


def verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """For each claim and method: over all metrics, how often the method's mean is better than the
    baseline's, the mean signed margin, and how many margins exceed the seeds' spread (the larger std);
    the verdict is what these numbers say, never forced."""
    s = summary.set_index(["method", "task", "metric"])
    rows = []
    for claim, (text, methods, baseline) in CLAIMS.items():
        for method in methods:
            base = baseline or f"{method} (w/o ft)"
            wins = clear = clear_loss = total = 0
            margins = []
            if method not in s.index.get_level_values("method"):
                continue
            for (task, metric), row in s.xs(method, level="method").iterrows():
                if (base, task, metric) not in s.index:
                    continue
                other = s.loc[(base, task, metric)]
                sign = -1 if row["lower_is_better"] else 1
                margin = sign * (row["value"] - other["value"])
                spread = np.nanmax([row["std"], other["std"], 0.0])
                total += 1
                wins += margin > 0
                clear += margin > spread and spread > 0
                clear_loss += -margin > spread and spread > 0
                margins.append(margin)
            if not total:
                continue
            if clear > clear_loss and wins > total / 2:
                verdict = "supported at our scale"
            elif clear_loss > clear and wins < total / 2:
                verdict = "not supported at our scale"
            else:
                verdict = "inconclusive: differences within the seed spread or mixed"
            rows.append({"claim": claim, "statement": text, "method": method, "baseline": base, "metrics": total,
                         "better": int(wins), "better_beyond_spread": int(clear), "worse_beyond_spread": int(clear_loss),
                         "mean_margin": float(np.mean(margins)), "verdict": verdict})
    return pd.DataFrame(rows)


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
