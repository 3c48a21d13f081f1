"""The one place a torch device is chosen, its numeric precision, the CPU kernels and threads its results
depend on, and torchrun / torch.distributed context."""
from __future__ import annotations

import contextlib
import os
import warnings

from corelib.cpu import CPU_ISA, cpu_flags, cpu_threads
from corelib.errors import InputError

_WARNED: list = []   # the CPU capability already warned about (once per process)


def reproducible_cpu() -> None:
    """Set torch's CPU threads (`corelib.cpu.cpu_threads`) and warn once if its kernels are not the pinned ones (torch
    imported before corelib, or ATEN_CPU_CAPABILITY set otherwise): results may then differ in the last bits."""
    import torch

    n = cpu_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    isa = torch.backends.cpu.get_cpu_capability()
    if CPU_ISA.lower() in cpu_flags() and isa != CPU_ISA and not _WARNED:
        _WARNED.append(isa)
        warnings.warn(f"torch runs {isa} CPU kernels, not {CPU_ISA} (import corelib before torch, or leave "
                      f"ATEN_CPU_CAPABILITY unset): CPU results may differ from the committed ones", stacklevel=2)


def choose_device(prefer: str | None = None):
    """The one place a torch device is chosen: `prefer` if given, else CUDA when available, else CPU; also
    fixes torch's CPU threads (`reproducible_cpu`)."""
    import torch

    reproducible_cpu()
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


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device) -> str:
    """The forward's precision on `device`: "auto" is bf16 on a CUDA device that supports it and fp32 elsewhere
    (CPU autocast in bf16 is slower than fp32 without bf16 instructions); fp32 and bf16 are kept as given."""
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def autocast(device, precision: str = "fp32"):
    """The forward pass's precision (`resolve_precision`): a no-op for fp32; bf16 autocast (weights and
    reductions stay fp32) where the device supports it, else an InputError. Losses, per-sample products and
    the Fisher are accumulated in fp32."""
    import torch

    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(f"bf16 requested but {torch.cuda.get_device_name(device)} does not support it; use fp32")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
