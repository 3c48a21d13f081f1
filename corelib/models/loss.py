"""The per-sequence MLM loss: mean cross-entropy over the masked tokens of each sequence (Section 3.2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------- loss and scope
def per_sequence_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """MLM cross-entropy of each sequence over its predicted positions (labels != -100), in fp32: their mean
    (Section 3.2, the default) or their sum. Pad, <cls> and <eos> never count, so a sequence's loss does not
    depend on its batch."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    if reduction == "sum":
        return ce.sum(1)
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return ce.sum(1) / (labels != -100).sum(1).clamp(min=1)
