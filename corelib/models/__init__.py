"""Model layer: one masked-LM interface over the model families (fair-esm RNA-FM / ESM-2, transformers ESM-C /
ESM, multimolecule RNA-FM), local checkpoints, the vocabulary contract and the per-sequence MLM loss."""
from corelib.models.checkpoints import get_model, load_checkpoint, save_checkpoint
from corelib.models.families import FAMILIES, ModelSpec, get_family
from corelib.models.loss import per_sequence_loss
from corelib.models.masked_lm import MODEL_PRESETS, MaskedLM, build_model

__all__ = [
    "FAMILIES",
    "MODEL_PRESETS",
    "MaskedLM",
    "ModelSpec",
    "build_model",
    "get_family",
    "get_model",
    "load_checkpoint",
    "per_sequence_loss",
    "save_checkpoint",
]
