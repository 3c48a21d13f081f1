"""corelib: influence-guided data pruning for biological foundation models (companion to the paper).

Public names are imported lazily, so `from corelib import cci` does not import torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "config": ["Preset", "PRESETS", "get_preset", "choose_device", "repo_root", "figures_dir", "cache_dir",
               "run_dir"],
    "errors": ["InputError"],
    "data": ["read_fasta", "check_fasta", "get_vocab", "mlm_mask", "pad_batch", "length_batches", "gc_content",
             "mlm_batches", "tokenize", "normalize", "residue_entropy"],
    "sources": ["build_dataset", "load_pool", "load_manifest", "dataset_path", "verify_datasets", "sha256_file",
                "summarize_pool", "join_pool"],
    "report": ["savefig", "save_table", "plot_pool_overview", "plot_loss_curves", "plot_score_panels",
               "plot_agreement", "plot_cci_strata", "plot_coreset_distributions", "plot_overlap", "plot_lines",
               "plot_scatter", "paper_results", "paper_style_table", "save_paper_table", "size_label",
               "experiment_long", "save_experiment_tables", "plot_loss_panels", "plot_downstream"],
    "models": ["build_model", "load_checkpoint", "save_checkpoint", "get_model", "MaskedLM", "MODEL_PRESETS"],
    "influence": ["diagonal_fisher", "self_influence", "per_sequence_loss", "scope_params", "resolve_damping",
                  "per_sample_gradient_matrix",
                  "PerSampleGradients"],
    "scoring": ["run_scoring", "ensure_scores"],
    "pretrain": ["train_mlm", "pretrain_pool", "ensure_pretrained", "TrainConfig", "mean_gradient_norm"],
    "coreset": ["read_scores", "write_scores", "select_indices", "write_coreset", "read_coreset"],
    "selection": ["top_k", "bottom_k", "cci", "cci_official", "stratum_of", "strata_table", "jaccard",
                  "overlap_matrix", "clumping", "composition", "distribution_shift", "length_stratified",
                  "loss_band", "cluster_capped", "resolve_budget", "coreset_diagnostics"],
    "clusters": ["mmseqs_clusters"],
    "labelled": ["LABELLED", "load_labelled", "build_labelled", "contact_map", "ca_coordinates"],
    "benchmarks": ["BENCHMARKS", "load_benchmark"],
    "tasks": ["PROTOCOLS", "Protocol", "train_head", "predict"],
    "evaluate": ["TASKS", "task_data", "score_task", "evaluate_encoder"],
    "experiment": ["CELLS", "cell_size", "experiment_dir", "pretrain_cells", "evaluate_cells", "summarize", "verdicts",
                   "run_experiment", "pretraining_summary"],
    "runner": ["run_notebooks", "list_notebooks"],
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'corelib' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
