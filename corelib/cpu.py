"""CPU numerics: the kernels and the thread count that a CPU result's last bits depend on, fixed so that every
machine of the project's kind computes the same outputs (torch's side is applied in `corelib.runtime`)."""
from __future__ import annotations

import os
from pathlib import Path

from corelib.errors import InputError

CPU_ISA = "AVX2"   # the instruction set CPU kernels are pinned to (every x86-64 machine of the project's kind has it)

CPU_THREADS = 2    # torch's intra-op threads on the CPU (the committed outputs were made with 2); see cpu_threads

# What picks a CPU kernel by instruction set, each read once, when its library first runs: torch's own kernels
# (ATen), oneDNN (torch's convolutions), MKL (torch's matrix products). MKL's conditional numerical
# reproducibility honours an instruction set only on Intel CPUs (on this AMD one MKL_CBWR=AVX2 ran as AUTO);
# COMPATIBLE is its one mode that gives the same bits on Intel and AMD (measured: no slower for the tiny model).
ISA_VARIABLES = {"ATEN_CPU_CAPABILITY": CPU_ISA.lower(), "ONEDNN_MAX_CPU_ISA": CPU_ISA, "MKL_CBWR": "COMPATIBLE"}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def pin_cpu_kernels(environ=None, flags=None) -> dict:
    """Same outputs on every machine of a kind: pin the CPU kernels torch uses (ISA_VARIABLES) where the CPU
    has CPU_ISA (a CPU with AVX-512, or another vendor's, would otherwise run other kernels and round
    differently, and a model trained on it drifts from the committed one). Sets the variables not already set
    (a caller's choice stands); torch and MKL read them when they first compute, so `corelib` sets them on
    import. Returns what it set. OpenBLAS (numpy, scipy) keeps its own kernel choice (the workplace may set
    OPENBLAS_CORETYPE): the solves that run through it are taken to their optimum (notebook 01's retraining,
    the probes), so its rounding stays far below the printed digits."""
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
