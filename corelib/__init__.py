"""corelib: influence-guided data pruning for biological foundation models (companion to the paper).

The curated public API is below; everything else is imported from its subpackage (`corelib.data`,
`corelib.models`, `corelib.influence`, `corelib.selection`, `corelib.training`, `corelib.evaluation`,
`corelib.experiment`, `corelib.report`). Names are imported lazily, so `from corelib import cci` does not
import torch.
"""
from __future__ import annotations

import importlib

from corelib.cpu import pin_cpu_kernels

__version__ = "0.1.0"

pin_cpu_kernels()   # before torch's first operation: the same CPU kernels on every machine (corelib.cpu)

_WHERE = {
    "get_preset": "corelib.config",            # presets smoke / demo / paper (Appendix A) + overrides
    "RunLayout": "corelib.layout",             # every path under runs/<preset>/
    "InputError": "corelib.errors",            # bad input: one line, exit status 2
    "read_fasta": "corelib.data",              # FASTA streaming with validation
    "load_pool": "corelib.data",               # a pool as a table
    "build_model": "corelib.models",           # masked LMs (RNA-FM / ESM-2 layouts)
    "load_checkpoint": "corelib.models",       # local .pt / .pth / Hugging Face folders
    "diagonal_fisher": "corelib.influence",    # Eq. 9
    "self_influence": "corelib.influence",     # Eq. 11
    "run_scoring": "corelib.influence",        # the scoring stage: fine-tune, Fisher, scores
    "read_scores": "corelib.selection",        # score files
    "select_indices": "corelib.selection",     # any select method by name
    "cci": "corelib.selection",                # Algorithm 1
    "top_k": "corelib.selection",              # Top-k influence
    "pretrain_pool": "corelib.training",       # pretraining from scratch (A.3/A.4)
    "evaluate_encoder": "corelib.evaluation",  # downstream tasks (Section 4.2, Appendix B)
    "GridRun": "corelib.experiment",           # the Tables 1-3 grid of a preset and modality
    "savefig": "corelib.report",               # figures/NN_<preset>_name.png
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'corelib' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
