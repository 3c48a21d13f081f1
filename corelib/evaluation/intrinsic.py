"""Intrinsic metric: the masked-LM loss (Section 3.2's MLM objective) on held-out sequences, at positions drawn by
FIXED masks (keyed by a mask seed and the sequence's index) where every evaluated position is fed <mask>: no
visible residue can be copied, so a model that reads no context does at best as well as the frequencies of the
masked residues, whose entropy is the floor (`masked_entropy`). loss - entropy < 0 means the model predicts masked
residues from their context. Per sequence and source; `summary` gives the overall figures, pooled or with each
source weighted by its share of the pool. The experiment layer chooses the held-out sequences.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from corelib.data.tokens import mlm_batches, mlm_mask
from corelib.errors import InputError
from corelib.models.loss import per_sequence_loss


@torch.no_grad()
def heldout_mlm_loss(encoder, tokens: list, families, vocab, mask_seed: int, mask_prob: float = 0.15,
                     batch_size: int = 32, device="cpu", ids=None) -> pd.DataFrame:
    """Masked-LM loss (Section 3.2) of held-out token arrays, every evaluated position <mask> (mask_seed, index):
    one row per sequence [item, family, num = sum of the masked tokens' cross-entropy (nats), den = masked
    tokens]; a family's loss is num.sum() / den.sum() over its rows."""
    families = list(families)
    if len(families) != len(tokens):
        raise InputError(f"{len(tokens)} sequences but {len(families)} families")
    ids = [str(i) for i in (ids if ids is not None else range(len(tokens)))]
    encoder.eval().to(device)
    num, den = np.zeros(len(tokens)), np.zeros(len(tokens))
    for inputs, labels, idx in mlm_batches(tokens, np.arange(len(tokens)), batch_size, vocab, mask_seed,
                                           order_seed=None, mask_prob=mask_prob, mask_only=True):
        labels = labels.to(device)
        num[idx] = per_sequence_loss(encoder(inputs.to(device)), labels, "sum").double().cpu().numpy()
        den[idx] = (labels != -100).sum(1).cpu().numpy()
    return pd.DataFrame({"item": ids, "family": [str(f) for f in families], "num": num, "den": den})


def masked_residues(tokens: list, families, vocab, mask_seed: int, mask_prob: float = 0.15) -> pd.DataFrame:
    """Counts of the residues at the evaluated positions (the masks `heldout_mlm_loss` draws), per family:
    [family, token, count] (Section 3.2)."""
    rows = []
    for k, (t, family) in enumerate(zip(tokens, families)):
        _, labels = mlm_mask(np.asarray(t, dtype=np.int64), k, mask_seed, vocab, mask_prob)
        rows.append(pd.DataFrame({"family": str(family), "token": labels[labels != -100]}))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["family", "token"])
    return table.groupby(["family", "token"]).size().rename("count").reset_index()


def entropy_of(counts) -> float:
    """Entropy (nats) of a distribution given by counts: the loss of predicting each of those residues from
    their frequencies alone (Section 3.2's loss, composition only)."""
    p = np.asarray(counts, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def masked_entropy(counts: pd.DataFrame) -> dict:
    """The floor of a model that reads no context: the entropy of the masked residues, "all" (pooled) and per
    family (Section 3.2)."""
    out = {"all": entropy_of(counts.groupby("token")["count"].sum())} if len(counts) else {}
    for family, part in counts.groupby("family", sort=True):
        out[str(family)] = entropy_of(part["count"])
    return out


def summary(losses: pd.DataFrame, entropy: dict, weights: dict | None = None) -> dict:
    """Loss, entropy and gap (loss - entropy), overall and per family, of `heldout_mlm_loss` rows: overall pooled
    over masked tokens, or with `weights` (family -> share, e.g. of the pool) the weighted mean of the families'
    figures (Section 3.2)."""
    sums = losses.groupby("family")[["num", "den"]].sum()
    per = {str(f): {"loss": float(r.num / r.den), "entropy": float(entropy[str(f)]),
                    "gap": float(r.num / r.den - entropy[str(f)]),
                    "sequences": int((losses["family"] == f).sum()), "masked_tokens": int(r.den)}
           for f, r in sums.iterrows()}
    if weights is None:
        loss, ent = float(sums["num"].sum() / sums["den"].sum()), float(entropy["all"])
    else:
        w = {f: float(weights.get(f, 0.0)) for f in per}
        total = sum(w.values())
        if total <= 0:
            raise InputError("no held-out family has a weight")
        loss = sum(w[f] * per[f]["loss"] for f in per) / total
        ent = sum(w[f] * per[f]["entropy"] for f in per) / total
    return {"loss": loss, "entropy": ent, "gap": loss - ent, "sequences": int(len(losses)),
            "masked_tokens": int(sums["den"].sum()), "weighted": weights is not None, "sources": per}


def family_losses(table: pd.DataFrame) -> pd.Series:
    """Section 3.2 MLM loss per family: the mean masked-token loss (nats): num.sum() / den.sum() of `heldout_mlm_loss` rows."""
    sums = table.groupby("family")[["num", "den"]].sum()
    return sums["num"] / sums["den"]


HELDOUT_MASK_SEED = 7919    # the evaluation masks: the same for every model, arm and seed (paired)
HELDOUT_WINDOW_SEED = 7907  # the evaluation windows of sequences longer than max_tokens: fixed and seeded


def evaluate_fasta(checkpoint, fasta, modality: str, max_tokens: int = 1024, mask_prob: float = 0.15,
                   mask_seed: int = HELDOUT_MASK_SEED, limit: int | None = None, batch_size: int = 32,
                   device="cpu") -> dict:
    """The intrinsic metric of a checkpoint on a FASTA (Section 3.2): masked-only MLM loss, the entropy of the
    masked residues and their gap, overall (pooled over masked tokens) and per `source=` of the headers, each
    longer sequence read through its fixed seeded window (`python -m corelib evaluate`)."""
    from itertools import islice

    from corelib.data.fasta import read_fasta
    from corelib.data.tokens import get_vocab, random_windows, tokenize
    from corelib.models.checkpoints import load_checkpoint

    model = load_checkpoint(checkpoint, modality)
    records = list(islice(read_fasta(fasta, modality), limit))
    vocab = get_vocab(modality)
    full = tokenize([r.seq for r in records], modality, None)
    tokens = random_windows(full, np.arange(len(full)), max_tokens, HELDOUT_WINDOW_SEED)
    sources = [r.fields.get("source", "unknown") for r in records]
    losses = heldout_mlm_loss(model, tokens, sources, vocab, mask_seed, mask_prob, batch_size, device,
                              ids=[r.id for r in records])
    entropy = masked_entropy(masked_residues(tokens, sources, vocab, mask_seed, mask_prob))
    return {"checkpoint": str(checkpoint), "fasta": str(fasta), "modality": modality, "max_tokens": max_tokens,
            "mask_prob": mask_prob, "mask_seed": mask_seed, **summary(losses, entropy)}
