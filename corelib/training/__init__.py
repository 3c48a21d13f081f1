"""Training layer: the masked-LM loop and its checkpoints, and the fine-tune / pretraining stages (A.3-A.5)."""
from corelib.training.loop import train_mlm
from corelib.training.pretrain import ensure_pretrained, pretrain_pool

__all__ = [
    "ensure_pretrained",
    "pretrain_pool",
    "train_mlm",
]
