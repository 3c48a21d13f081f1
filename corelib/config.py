"""Presets (smoke / demo / paper, Appendix A) shared by notebooks and the CLI, paths, and device choice."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError


@dataclass(frozen=True)
class Preset:
    """All knobs of one run; `paper` holds the values of Appendix A (A.3-A.6, B)."""

    name: str
    rna_pool: str = "rna_demo"            # data set name (data_manifests/NAME.yaml) or a FASTA path
    protein_pool: str = "protein_demo"
    pool_limit: int | None = None          # use only the first N pool sequences (None = all)
    max_tokens: int = 1024                 # RNA-FM limit, cls and eos included
    model: str = "tiny"                    # model preset: tiny / small / paper
    batch_size: int = 16                   # A.3-A.5
    mask_prob: float = 0.15                # A.5
    subset_size: int = 200_000             # |D_sub| (A.5)
    ft_lr: float = 1e-5                    # A.5
    ft_weight_decay: float = 0.01
    ft_warmup_steps: int = 50
    ft_epochs: int = 1
    damping: float = 1e-8                  # added to diag(F) before inversion (Eq. 10)
    pretrain_lr: float = 1e-4              # A.3/A.4
    pretrain_weight_decay: float = 0.01
    pretrain_warmup_steps: int = 2000
    pretrain_epochs: int = 10
    budget: int = 200_000                  # coreset size (Section 4)
    hard_cutoff: float = 0.05              # beta (A.1)
    strata: int = 50                       # k (A.1)
    seeds: tuple[int, ...] = (0, 1, 2)     # B.3
    downstream_train: int | None = None    # at most this many train / test rows per labelled set (None = all)
    downstream_test: int | None = None
    downstream_epochs: int | None = None   # None = the epochs of Appendix B's protocols
    downstream_lr: float | None = None     # frozen-encoder heads only; None = Appendix B's learning rates
    seed: int = 0                          # A.6

    def replace(self, **overrides) -> "Preset":
        """A copy with some fields overridden (unknown names are an InputError)."""
        known = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise InputError(f"unknown preset field(s): {', '.join(bad)}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **overrides)


PRESETS: dict[str, Preset] = {
    # CPU minutes: a slice of the embedded demo pools, a tiny model, short sequences.
    # (a tiny model learns nothing in a few dozen steps at lr 1e-4, so smoke pretrains at 1e-3, and its
    # downstream tasks train for a few epochs, frozen-encoder heads at 1e-3, on a slice of each labelled set)
    "smoke": Preset(name="smoke", pool_limit=256, max_tokens=130, model="tiny", batch_size=16,
                    subset_size=64, ft_warmup_steps=2, pretrain_lr=1e-3, pretrain_warmup_steps=10,
                    pretrain_epochs=4, budget=24, strata=10, seeds=(0,), downstream_train=160,
                    downstream_test=80, downstream_epochs=6, downstream_lr=1e-3),
    # The whole embedded demo pools, a small model; downstream 10 epochs, frozen-encoder heads at lr 1e-3
    # (Appendix B's 1e-5 moves a head on these small sets too little to compare encoders). 5 min on an H100;
    # about 3 hours on 2 CPU cores (measured in part, README), over the intended hour.
    "demo": Preset(name="demo", max_tokens=258, model="small", subset_size=1000,
                   ft_warmup_steps=10, pretrain_lr=1e-3, pretrain_warmup_steps=200, pretrain_epochs=3,
                   budget=400, strata=20, seeds=(0, 1, 2), downstream_epochs=10, downstream_lr=1e-3),
    # Appendix A: RNA-FM size, full corpora (RNAcentral / UniRef50), GPU.
    "paper": Preset(name="paper", rna_pool="rnacentral", protein_pool="uniref50", model="paper"),
}


def get_preset(name: str = "smoke", **overrides) -> Preset:
    """The named preset (smoke / demo / paper) with optional field overrides."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


def repo_root() -> Path:
    """The checkout holding notebooks/ and data_manifests/ (CORELIB_ROOT overrides)."""
    env = os.environ.get("CORELIB_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[1]


def figures_dir() -> Path:
    """Where every figure and table is written (figures/NN_name.*)."""
    return repo_root() / "figures"


def cache_dir() -> Path:
    """Downloaded Debian packages and full builds (never committed); CORELIB_CACHE overrides."""
    return Path(os.environ.get("CORELIB_CACHE", repo_root() / "data_cache"))


def choose_device(prefer: str | None = None):
    """The one place a torch device is chosen: `prefer` if given, else CUDA when available, else CPU."""
    import torch

    if isinstance(prefer, torch.device):
        prefer = str(prefer)
    if prefer:
        if prefer.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {prefer!r} requested but CUDA is not available")
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_dir(preset: str) -> Path:
    """runs/<preset>/: where notebooks and `make reproduce` keep models, scores and coresets (not committed)."""
    return repo_root() / "runs" / preset


def dist_context(device=None):
    """(rank, world, device): initialises torch.distributed under torchrun (gloo on CPU, nccl on GPU);
    one process is (0, 1, chosen device)."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and str(device or "cuda").startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    if device is None and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return rank, world, choose_device(device)


def barrier(world: int) -> None:
    """Wait for every rank (no-op in one process)."""
    if world > 1:
        import torch

        torch.distributed.barrier()
