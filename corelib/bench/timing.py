"""Timing helpers of the benchmarks: throughput after a warm-up, wall time and peak RSS of a fresh process,
a measured matmul peak."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import torch


def sync(device) -> None:
    """Wait for queued CUDA work (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def rate(fn, n_seqs: int, device, repeats: int = 1, warmup=None) -> float:
    """Sequences/s of `fn` (n_seqs sequences per call), timed after a warm-up call (`warmup`, default `fn`
    itself: allocations, kernels and caches are set up before the clock starts)."""
    (warmup or fn)()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return repeats * n_seqs / (time.perf_counter() - start)


_WRAPPER = """
import atexit, runpy, sys

def _peak():
    line = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]
    sys.stderr.write('\\nVMHWM_KB ' + line.split()[1] + '\\n')

atexit.register(_peak)
mode, target, *rest = sys.argv[1:]
if mode == '-m':
    sys.argv = [target, *rest]
    runpy.run_module(target, run_name='__main__', alter_sys=True)
else:
    sys.argv = ['-c', *rest]
    exec(compile(target, '<bench>', 'exec'), {'__name__': '__main__'})
"""


def measured_process(argv: list[str], env: dict | None = None) -> dict:
    """Run `python -m MODULE ARGS` or `python -c CODE` (argv without the interpreter) in a fresh process;
    returns its wall seconds, its peak RSS in MB (VmHWM of its own address space, read as it exits; ru_maxrss
    of a child would be inherited from this process) and its stdout. A failure raises RuntimeError with the
    stderr tail."""
    if argv[:1] not in (["-m"], ["-c"]):
        raise ValueError("argv must start with -m MODULE or -c CODE")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    peak = [line for line in proc.stderr.splitlines() if line.startswith("VMHWM_KB ")]
    if proc.returncode != 0 or not peak:
        raise RuntimeError(f"{' '.join(argv[:3])} ... failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return {"wall_s": wall, "peak_rss_mb": int(peak[-1].split()[1]) / 1024, "stdout": proc.stdout}


def matmul_peak_tflops(device, dtype=torch.float32, size: int = 2048, repeats: int = 10) -> float:
    """A measured matmul peak (TFLOP/s) of `device` in `dtype`: `size` x `size` products after a warm-up."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e12
