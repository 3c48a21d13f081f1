"""Experiment layer: the Tables 1-3 grid and the claims C1-C3."""
from corelib.experiment.claims import CLAIMS, LOWER_IS_BETTER, summarize, verdicts
from corelib.experiment.grid import (
    CELLS,
    REFERENCE,
    Cell,
    cell_model,
    cell_size,
    check_settings,
    evaluate_cells,
    experiment_dir,
    pretrain_cells,
    pretraining_summary,
    reference_model,
    run_experiment,
)

__all__ = ['LOWER_IS_BETTER', 'summarize', 'CLAIMS', 'verdicts', 'Cell', 'CELLS', 'REFERENCE', 'experiment_dir', 'cell_size', 'reference_model', 'check_settings', 'pretrain_cells', 'cell_model', 'evaluate_cells', 'run_experiment', 'pretraining_summary']
