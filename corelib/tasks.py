"""Downstream heads and training protocols of Appendix B (the datasets come with the downstream stage).

Sequence-level tasks pool the encoder's final hidden states over the residues (mean, pad / <cls> / <eos>
excluded) into a linear head (RNA tasks) or a two-layer MLP (protein tasks); residue-level tasks put the
head on every residue. The protocol says whether the encoder is fine-tuned with the head (RNA type
classification, modification, CRISPR) or frozen (structure, interaction and protein tasks), and gives
epochs, batch size, learning rate and weight decay as the appendix states them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import pad_batch
from .errors import InputError


@dataclass(frozen=True)
class Protocol:
    """How one downstream task is trained (Appendix B)."""

    level: str            # "sequence" or "residue"
    head: str             # "linear" or "mlp2"
    finetune_encoder: bool
    loss: str             # "ce", "bce" or "mse"
    epochs: int
    lr: float
    batch_size: int = 32
    weight_decay: float = 0.01


PROTOCOLS = {
    "typecls": Protocol("sequence", "linear", True, "ce", 30, 1e-4),        # B.1 RNA type classification
    "modif": Protocol("sequence", "linear", True, "bce", 30, 5e-5),         # B.1 modification (12 labels)
    "crispr": Protocol("sequence", "linear", True, "mse", 30, 1e-4),        # B.1 CRISPR on-target
    "rbp": Protocol("sequence", "linear", False, "ce", 10, 1e-5),           # B.1 RBP interaction, frozen
    "localization": Protocol("sequence", "mlp2", False, "ce", 50, 1e-5),    # B.2 binary localization
    "ss_protein": Protocol("residue", "mlp2", False, "ce", 50, 1e-5),       # B.2 protein secondary structure
    "affinity": Protocol("sequence", "mlp2", False, "mse", 50, 1e-5),       # B.2 PPI affinity (pair pooled)
}


class DownstreamModel(nn.Module):
    """Encoder (a corelib MaskedLM) plus a head on its final hidden states."""

    def __init__(self, encoder, outputs: int, protocol: Protocol):
        super().__init__()
        self.encoder, self.protocol = encoder, protocol
        dim = encoder.spec["embed_dim"]
        self.head = nn.Linear(dim, outputs) if protocol.head == "linear" else nn.Sequential(
            nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, outputs))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        vocab = self.encoder.vocab
        with torch.set_grad_enabled(self.protocol.finetune_encoder and self.training):
            hidden = self.encoder.encode(tokens)
        residues = ((tokens != vocab.pad) & (tokens != vocab.cls) & (tokens != vocab.eos)).unsqueeze(-1)
        if self.protocol.level == "residue":
            return self.head(hidden)
        pooled = (hidden * residues).sum(1) / residues.sum(1).clamp(min=1)
        return self.head(pooled)


def _loss(protocol: Protocol, out, y):
    if protocol.level == "residue":   # labels per token, -100 on pad / <cls> / <eos>
        return F.cross_entropy(out.transpose(1, 2), y, ignore_index=-100)
    if protocol.loss == "ce":
        return F.cross_entropy(out, y)
    if protocol.loss == "bce":
        return F.binary_cross_entropy_with_logits(out, y.float())
    return F.mse_loss(out.squeeze(-1), y.float())


def train_head(encoder, protocol: Protocol, tokens: list, labels, outputs: int, seed: int = 0,
               epochs: int | None = None, device="cpu") -> DownstreamModel:
    """Train a head (and, if the protocol says so, the encoder) with AdamW; returns the trained model.
    The encoder passed in is copied, never modified."""
    if len(tokens) != len(labels):
        raise InputError(f"{len(tokens)} sequences but {len(labels)} labels")
    torch.manual_seed(seed)
    model = DownstreamModel(copy.deepcopy(encoder), outputs, protocol).to(device)
    for p in model.encoder.parameters():
        p.requires_grad_(protocol.finetune_encoder)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=protocol.lr,
                            weight_decay=protocol.weight_decay)
    rng = np.random.default_rng(seed)
    vocab = encoder.vocab
    for _ in range(epochs or protocol.epochs):
        model.train()
        order = rng.permutation(len(tokens))
        for start in range(0, len(order), protocol.batch_size):
            batch = order[start : start + protocol.batch_size]
            x = torch.from_numpy(pad_batch([tokens[i].astype(np.int64) for i in batch], vocab.pad)).to(device)
            y = _labels([labels[i] for i in batch], protocol, x.shape[1]).to(device)
            loss = _loss(protocol, model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    return model


def _labels(rows, protocol: Protocol, width: int) -> torch.Tensor:
    if protocol.level == "residue":     # per-residue labels placed after <cls>
        return torch.from_numpy(pad_batch([np.r_[-100, np.asarray(r, dtype=np.int64), -100] for r in rows], -100)[:, :width])
    return torch.as_tensor(np.asarray(rows))


@torch.no_grad()
def predict(model: DownstreamModel, tokens: list, batch_size: int = 64, device="cpu") -> np.ndarray:
    """Head outputs for each sequence (logits or values; residue tasks: one row per residue, concatenated)."""
    model.eval().to(device)
    vocab = model.encoder.vocab
    outs = []
    for start in range(0, len(tokens), batch_size):
        rows = tokens[start : start + batch_size]
        x = torch.from_numpy(pad_batch([r.astype(np.int64) for r in rows], vocab.pad)).to(device)
        out = model(x).float().cpu().numpy()
        if model.protocol.level == "residue":
            out = np.concatenate([o[1 : len(r) - 1] for o, r in zip(out, rows)])
        outs.append(out)
    return np.concatenate(outs)
