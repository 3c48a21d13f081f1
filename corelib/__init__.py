"""corelib: influence-guided data pruning for biological foundation models (companion to the paper).

Public names are imported lazily, so `from corelib import cci` does not import torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "config": ["Preset", "PRESETS", "get_preset", "choose_device", "repo_root", "figures_dir", "cache_dir"],
    "errors": ["InputError"],
    "data": ["read_fasta", "check_fasta", "get_vocab", "mlm_mask", "pad_batch", "length_batches", "gc_content",
             "normalize"],
    "sources": ["build_dataset", "load_pool", "load_manifest", "dataset_path", "verify_datasets", "sha256_file",
                "summarize_pool"],
    "report": ["savefig", "save_table", "plot_pool_overview"],
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
