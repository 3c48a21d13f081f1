"""The per-sequence MLM loss: mean cross-entropy over the masked tokens of each sequence (Section 3.2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------- loss and scope
def per_sequence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MLM cross-entropy of each sequence, averaged over its predicted positions (labels != -100):
    pad, <cls> and <eos> never count, so a sequence's loss does not depend on its batch."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return ce.sum(1) / (labels != -100).sum(1).clamp(min=1)
