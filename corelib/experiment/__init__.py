"""Experiment layer: the Tables 1-3 grid, the held-out slice, paired statistics and the claims C1-C3."""
from corelib.experiment.calibration import NoiseModel, Shape, calibrate, preset_shape, simulate, synthetic_grid
from corelib.experiment.claims import (
    CLAIMS,
    LOWER_IS_BETTER,
    Grid,
    assess,
    gate_line,
    no_verdict_reason,
    summarize,
    verdicts,
    why_no_verdicts,
)
from corelib.experiment.grid import (
    CELLS,
    REFERENCE,
    Cell,
    cell_model,
    cell_size,
    cell_steps,
    cells,
    check_settings,
    evaluate_cells,
    experiment_dir,
    heldout_slice,
    load_grid,
    pretrain_cells,
    pretraining_histories,
    pretraining_summary,
    reference_model,
    run_experiment,
    seed_dir,
)
from corelib.experiment.heldout import Heldout, choose_heldout, ensure_heldout
from corelib.experiment.stats import holm, paired, resample

__all__ = ['LOWER_IS_BETTER', 'summarize', 'CLAIMS', 'verdicts', 'why_no_verdicts', 'no_verdict_reason', 'gate_line', 'Grid', 'assess', 'Cell',
           'CELLS', 'cells', 'cell_steps', 'REFERENCE', 'experiment_dir', 'seed_dir', 'cell_size', 'reference_model', 'check_settings',
           'heldout_slice', 'pretrain_cells', 'pretraining_histories', 'cell_model', 'evaluate_cells', 'load_grid',
           'run_experiment', 'pretraining_summary', 'Heldout', 'choose_heldout', 'ensure_heldout', 'holm', 'paired',
           'resample', 'NoiseModel', 'Shape', 'calibrate', 'preset_shape', 'simulate', 'synthetic_grid']
