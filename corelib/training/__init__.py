"""Training layer: the masked-LM loop and the fine-tune / pretraining stages (A.3-A.5)."""
from corelib.training.loop import lr_factor, mean_gradient_norm, train_mlm
from corelib.training.pretrain import ensure_pretrained, pretrain_pool

__all__ = ["lr_factor", "train_mlm", "mean_gradient_norm", "pretrain_pool", "ensure_pretrained"]
