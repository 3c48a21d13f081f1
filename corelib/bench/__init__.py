"""Benchmarks (scripts, not tests; docs/benchmarks.md):

- `python -m corelib.bench scoring`: training-step, scorer, official-method and naive-loop throughputs on the
  same model and sequences, each ratio beside its target (`corelib.bench.throughput`);
- `python -m corelib.bench scale`: the token store, `score` and `select` at pool sizes of millions, wall time
  and peak RSS of each in a fresh process (`corelib.bench.scale`);
- `python -m corelib.bench pilot`: does a budget-sized random set pass the gate (`corelib.experiment.pilot`).
"""
from corelib.bench.command import main

__all__ = ["main"]
