"""Where things live: one `RunLayout` owns every path a run writes under runs/<preset>/ and the pool of each
modality; `figures_dir` is where figures and tables go (CORELIB_FIGURES points it elsewhere, e.g. in tests).

runs/<preset>/
    reference/<modality>/model.pt          reference model pretrained on the pool (stand-in for RNA-FM / ESM)
    scores/<modality>_{ft,noft}[_scope]/   score folders (scores.parquet + scores.json, Section 3.2)
    experiment/<modality>/                 the Tables 1-3 grid (`corelib.experiment.GridRun`):
        settings.json                      the preset it was run with
        heldout/                           the held-out slice (heldout.csv, manifest.json)
        full_pool/                         the Full pool reference (model.pt, history.csv)
        scores/draw<D>_{ft,noft}/          scoring draw D, with and without the subset fine-tune
        baselines/seed<S>/                 metrics.csv, items.csv of the composition baseline rows
        <cell>/seed<S>/                    coreset/, model.pt, history.csv, metrics.csv, items.csv, heldout.csv
    notebooks/                             executed copies of the notebooks (`make reproduce`)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from corelib.config import Preset, repo_root
from corelib.data.fasta import MODALITIES
from corelib.data.manifests import dataset_path
from corelib.errors import InputError


def figures_dir() -> Path:
    """Where every figure and table is written: figures/ in the checkout, or $CORELIB_FIGURES."""
    env = os.environ.get("CORELIB_FIGURES")
    return Path(env) if env else repo_root() / "figures"


def runs_root() -> Path:
    """runs/ in the checkout, or $CORELIB_RUNS (tests point it at a temporary folder)."""
    env = os.environ.get("CORELIB_RUNS")
    return Path(env) if env else repo_root() / "runs"


def slug(name: str) -> str:
    """Folder name of a grid cell: 'Top I (w/o ft)' -> 'top_i_wo_ft'."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]+", "_", name.lower().replace("w/o", "wo"))).strip("_")


@dataclass(frozen=True)
class RunLayout:
    """Every path under runs/<preset>/ for one preset (see the module docstring for the tree)."""

    preset: Preset

    @property
    def root(self) -> Path:
        """runs/<preset>/."""
        return runs_root() / self.preset.name

    def pool_name(self, modality: str) -> str:
        """The preset's pool for a modality: a data set name or a FASTA path."""
        if modality not in MODALITIES:
            raise InputError(f"unknown modality {modality!r}; choose one of: {', '.join(MODALITIES)}")
        return self.preset.data.rna_pool if modality == "rna" else self.preset.data.protein_pool

    def pool(self, modality: str) -> Path:
        """The pool FASTA of a modality (a missing paper corpus is one InputError saying where to put it)."""
        return dataset_path(self.pool_name(modality))

    def reference(self, modality: str) -> Path:
        """Folder of the reference model pretrained on the whole pool."""
        return self.root / "reference" / modality

    def reference_model(self, modality: str) -> Path:
        """The reference model's checkpoint."""
        return self.reference(modality) / "model.pt"

    def scores(self, modality: str, finetune: bool = True, scope: str = "all") -> Path:
        """Score folder of the preset's pool: with or without the subset fine-tune, one scope."""
        name = f"{modality}_{'ft' if finetune else 'noft'}" + ("" if scope == "all" else f"_{scope}")
        return self.root / "scores" / name

    def experiment(self, modality: str) -> Path:
        """The Tables 1-3 grid of one modality."""
        return self.root / "experiment" / modality

    def grid_settings(self, modality: str) -> Path:
        """The preset a grid was run with (a rerun with other settings is refused)."""
        return self.experiment(modality) / "settings.json"

    def heldout(self, modality: str) -> Path:
        """The grid's held-out slice."""
        return self.experiment(modality) / "heldout"

    def cell(self, modality: str, cell: str) -> Path:
        """One grid cell's folder (its seeds' folders)."""
        return self.experiment(modality) / slug(cell)

    def grid_reference(self, modality: str) -> Path:
        """The grid's Full pool reference, pretrained on the pool less the held-out slice."""
        return self.cell(modality, "Full pool")

    def grid_scores(self, modality: str, draw: int, finetune: bool) -> Path:
        """Scoring draw `draw` of the grid (its D_sub, fine-tune and Fisher), with or without the fine-tune."""
        return self.experiment(modality) / "scores" / f"draw{draw}_{'ft' if finetune else 'noft'}"

    def seed_dir(self, modality: str, cell: str, seed: int) -> Path:
        """One grid cell at one seed: its coreset, model, history and evaluation files."""
        return self.cell(modality, cell) / f"seed{seed}"

    def coreset(self, modality: str, cell: str, seed: int) -> Path:
        """One grid cell's coreset folder at one seed."""
        return self.seed_dir(modality, cell, seed) / "coreset"

    def baselines(self, modality: str, seed: int) -> Path:
        """The composition baseline rows of the grid at one seed."""
        return self.experiment(modality) / "baselines" / f"seed{seed}"

    def notebooks(self) -> Path:
        """Executed copies of the notebooks."""
        return self.root / "notebooks"
