"""Experiment layer: the Tables 1-3 grid (`GridRun`), the held-out slice, paired statistics, the claims C1-C3 and
their null calibration."""
from corelib.experiment.claims import summarize, verdicts
from corelib.experiment.grid import GridRun, pretraining_summary

__all__ = [
    "GridRun",
    "pretraining_summary",
    "summarize",
    "verdicts",
]
