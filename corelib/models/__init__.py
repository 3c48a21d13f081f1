"""Model layer: masked-LM architectures, local checkpoints, the per-sequence MLM loss."""
from corelib.models.checkpoints import get_model, load_checkpoint, save_checkpoint
from corelib.models.loss import per_sequence_loss
from corelib.models.masked_lm import (
    MAX_POSITIONS,
    MODEL_PRESETS,
    MaskedLM,
    ModelSpec,
    build_model,
    build_net,
)

__all__ = ['ModelSpec', 'MODEL_PRESETS', 'MAX_POSITIONS', 'MaskedLM', 'build_net', 'build_model', 'load_checkpoint', 'save_checkpoint', 'get_model', 'per_sequence_loss']
