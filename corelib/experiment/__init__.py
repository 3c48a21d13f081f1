"""Experiment layer: the Tables 1-3 grid (`GridRun`), the held-out slice, paired statistics, the claims C1-C3 and
their null calibration."""
from corelib.experiment.calibration import NoiseModel, Shape, calibrate, preset_shape, simulate, synthetic_grid
from corelib.experiment.claims import CLAIMS, Grid, assess, gate_line, summarize, verdicts
from corelib.experiment.grid import CELLS, REFERENCE, Cell, GridRun, cell_size, cells, pretraining_summary
from corelib.experiment.heldout import Heldout, choose_heldout, ensure_heldout
from corelib.experiment.stats import holm, paired, resample

__all__ = [
    "CELLS",
    "CLAIMS",
    "REFERENCE",
    "Cell",
    "Grid",
    "GridRun",
    "Heldout",
    "NoiseModel",
    "Shape",
    "assess",
    "calibrate",
    "cell_size",
    "cells",
    "choose_heldout",
    "ensure_heldout",
    "gate_line",
    "holm",
    "paired",
    "preset_shape",
    "pretraining_summary",
    "resample",
    "simulate",
    "summarize",
    "synthetic_grid",
    "verdicts",
]
