"""Intrinsic metric: the masked-LM loss (Section 3.2's MLM objective) on held-out sequences under FIXED
masks (corelib.data.mlm_batches keyed by a mask seed and the sequence's index), per sequence and source
family, and the unigram entropy of the held-out residues: loss - entropy < 0 means the model predicts
masked residues better than their frequencies alone. The experiment layer chooses the held-out sequences.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from corelib.data.tokens import mlm_batches, residue_entropy
from corelib.errors import InputError
from corelib.models.loss import per_sequence_loss


@torch.no_grad()
def heldout_mlm_loss(encoder, tokens: list, families, vocab, mask_seed: int, mask_prob: float = 0.15,
                     batch_size: int = 32, device="cpu", ids=None) -> pd.DataFrame:
    """Masked-LM loss (Section 3.2) of held-out token arrays with fixed BERT masks (mask_seed, index):
    one row per sequence [item, family, num = sum of the masked tokens' cross-entropy (nats),
    den = masked tokens]; a family's loss is num.sum() / den.sum() over its rows."""
    families = list(families)
    if len(families) != len(tokens):
        raise InputError(f"{len(tokens)} sequences but {len(families)} families")
    ids = [str(i) for i in (ids if ids is not None else range(len(tokens)))]
    encoder.eval().to(device)
    num, den = np.zeros(len(tokens)), np.zeros(len(tokens))
    for inputs, labels, idx in mlm_batches(tokens, np.arange(len(tokens)), batch_size, vocab, mask_seed,
                                           order_seed=None, mask_prob=mask_prob):
        labels = labels.to(device)
        num[idx] = per_sequence_loss(encoder(inputs.to(device)), labels, "sum").double().cpu().numpy()
        den[idx] = (labels != -100).sum(1).cpu().numpy()
    return pd.DataFrame({"item": ids, "family": [str(f) for f in families], "num": num, "den": den})


def family_losses(table: pd.DataFrame) -> pd.Series:
    """Section 3.2 MLM loss per family: the mean masked-token loss (nats): num.sum() / den.sum() of `heldout_mlm_loss` rows."""
    sums = table.groupby("family")[["num", "den"]].sum()
    return sums["num"] / sums["den"]


def unigram_entropy(seqs) -> float:
    """Entropy (nats) of the residue frequencies of held-out sequences: the MLM loss of predicting every
    masked residue from its frequency alone (Section 3.2's loss, composition only)."""
    return residue_entropy(seqs)
