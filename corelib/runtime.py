"""The one place a torch device is chosen, and torchrun / torch.distributed context."""
from __future__ import annotations

import os

from corelib.errors import InputError


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
