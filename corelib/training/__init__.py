"""Training layer: the masked-LM loop and its checkpoints, and the fine-tune / pretraining stages (A.3-A.5)."""
from corelib.training.loop import Checkpointer, lr_factor, mean_gradient_norm, train_mlm, train_step
from corelib.training.pretrain import ensure_pretrained, pretrain_pool

__all__ = ["lr_factor", "train_mlm", "train_step", "Checkpointer", "mean_gradient_norm", "pretrain_pool",
           "ensure_pretrained"]
