"""CPU numerics: the kernels and the thread count that a CPU result's last bits depend on, fixed so that every
machine of the project's kind computes the same outputs (torch's side is applied in `corelib.runtime`)."""
from __future__ import annotations

import os
from pathlib import Path

from corelib.errors import InputError

CPU_ISA = "AVX2"   # the instruction set CPU kernels are pinned to (every x86-64 machine of the project's kind has it)

CPU_THREADS = 2    # torch's intra-op threads on the CPU (the committed outputs were made with 2); see cpu_threads

# What picks a CPU kernel by instruction set, each read once, when its library first runs: torch's own kernels
# (ATen), MKL (torch's matrix products; conditional numerical reproducibility), oneDNN (torch's convolutions).
# MKL honours CBWR=AVX2 on Intel CPUs (an AVX-512 one then runs the AVX2 path); on this AMD one it runs as AUTO.
# COMPATIBLE, its only vendor-independent mode, rounds without FMA: tests/test_hf_models.py's per-sample
# gradient check (rtol 1e-6) then fails by 1.5e-6, so it is not the default.
ISA_VARIABLES = {"ATEN_CPU_CAPABILITY": CPU_ISA.lower(), "MKL_CBWR": CPU_ISA, "ONEDNN_MAX_CPU_ISA": CPU_ISA}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def pin_cpu_kernels(environ=None, flags=None) -> dict:
    """Same outputs on every machine of a kind: pin the CPU kernels torch uses to CPU_ISA where the CPU has
    it (a CPU with AVX-512 would otherwise run other kernels and round differently, and a model trained on it
    drifts from the committed one). Sets the ISA_VARIABLES not already set (a caller's choice stands); they
    take effect only if set before torch runs its first operation, so `corelib` does this on import.
    Returns what it set. OpenBLAS (numpy, scipy) is left to pick its kernel: what it computes is either
    exact to far below the printed digits or printed to the digits its solver's tolerance supports."""
    environ = os.environ if environ is None else environ
    flags = cpu_flags() if flags is None else flags
    if CPU_ISA.lower() not in flags:
        return {}
    added = {k: v for k, v in ISA_VARIABLES.items() if k not in environ}
    environ.update(added)
    return added


def cpu_threads() -> int:
    """torch's intra-op threads on the CPU: $CORELIB_THREADS, else $OMP_NUM_THREADS (a run that chose its threads
    keeps them), else CPU_THREADS. Reductions and matrix products split their sums by thread, so their last bits
    depend on the thread count: it is fixed, not the machine's core count."""
    value = os.environ.get("CORELIB_THREADS", "")
    if value and (not value.isdigit() or int(value) < 1):
        raise InputError(f"CORELIB_THREADS={value!r}: expected a whole number of threads >= 1")
    omp = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value else int(omp) if omp.isdigit() and int(omp) > 0 else CPU_THREADS
