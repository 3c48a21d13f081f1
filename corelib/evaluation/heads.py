"""Downstream heads and training protocols of Appendix B."""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from corelib.data.tokens import pad_batch
from corelib.errors import InputError


@dataclass(frozen=True)
class Protocol:
    """How one downstream task is trained (Appendix B)."""

    level: str            # "sequence", "residue" or "pair"
    head: str             # "linear", "mlp2" or "pair"
    finetune_encoder: bool
    loss: str             # "ce", "bce" or "mse"
    epochs: int
    lr: float
    batch_size: int = 32
    weight_decay: float = 0.01

    def scaled(self, epochs: int | None = None, lr: float | None = None, batch_size: int | None = None) -> Protocol:
        """The same protocol with a preset's epochs / learning rate / batch size (None keeps the appendix value)."""
        return replace(self, epochs=epochs if epochs is not None else self.epochs, lr=lr if lr is not None else self.lr,
                       batch_size=batch_size if batch_size is not None else self.batch_size)

PROTOCOLS = {
    "typecls": Protocol("sequence", "linear", True, "ce", 30, 1e-4),        # B.1 RNA type classification
    "modif": Protocol("sequence", "linear", True, "bce", 30, 5e-5),         # B.1 modification (12 labels)
    "crispr": Protocol("sequence", "linear", True, "mse", 30, 1e-4),        # B.1 CRISPR on-target
    "ss_rna": Protocol("pair", "pair", False, "bce", 10, 1e-5),             # B.1 secondary structure, frozen
    "contact_rna": Protocol("pair", "pair", False, "bce", 10, 1e-5),        # B.1 contact map, frozen
    "distance_rna": Protocol("pair", "pair", False, "mse", 10, 1e-5),       # B.1 distance map, frozen
    "rbp": Protocol("sequence", "linear", False, "ce", 10, 1e-5),           # B.1 RBP interaction, frozen
    "localization": Protocol("sequence", "mlp2", False, "ce", 50, 1e-5),    # B.2 binary localization
    "ss_protein": Protocol("residue", "mlp2", False, "ce", 50, 1e-5),       # B.2 protein secondary structure
    "contact_protein": Protocol("pair", "pair", False, "bce", 50, 1e-5),    # contacts, as B.2's frozen heads
    "affinity": Protocol("sequence", "mlp2", False, "mse", 50, 1e-5),       # B.2 PPI affinity (pair pooled)
}

FINETUNE_LR = 1e-4   # B.1: the learning rate of the fine-tuned tasks (TypeCls, CRI-On; Modif 5e-5)


def finetuned(protocol: Protocol) -> Protocol:
    """Appendix B.1's protocol for a task: its head with the whole encoder fine-tuned; a protocol B gives with a
    frozen encoder (B.2's localisation) is fine-tuned as B.1 does, at B.1's learning rate (FINETUNE_LR)."""
    return protocol if protocol.finetune_encoder else replace(protocol, finetune_encoder=True, lr=FINETUNE_LR)


PAIR_DIM = 16

PAIR_CHANNELS = 8


class Head(nn.Module):
    """The task head on residue states (B, L, C) with a residue mask (B, L)."""

    def __init__(self, dim: int, outputs: int, protocol: Protocol):
        super().__init__()
        self.level = protocol.level
        if protocol.head == "pair":   # pair features, then 5x5 convolutions that see neighbouring pairs (stacking)
            self.proj = nn.Linear(dim, PAIR_DIM)
            self.net = nn.Sequential(nn.Conv2d(2 * PAIR_DIM, PAIR_CHANNELS, 5, padding=2), nn.GELU(),
                                     nn.Conv2d(PAIR_CHANNELS, PAIR_CHANNELS, 5, padding=2), nn.GELU(),
                                     nn.Conv2d(PAIR_CHANNELS, outputs, 1))
        elif protocol.head == "linear":
            self.net = nn.Linear(dim, outputs)
        else:
            self.net = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, outputs))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.level == "sequence":
            m = mask.unsqueeze(-1).to(states.dtype)
            return self.net((states * m).sum(1) / m.sum(1).clamp(min=1))
        if self.level == "residue":
            return self.net(states)
        z = self.proj(states)                                     # symmetric pair features (B, 2P, L, L)
        zi, zj = z.unsqueeze(2), z.unsqueeze(1)
        out = self.net(torch.cat([zi * zj, (zi - zj).abs()], dim=-1).permute(0, 3, 1, 2)).squeeze(1)
        return (out + out.transpose(-1, -2)) / 2


def residue_states(encoder, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states of the residues only, (B, L, C), and their mask: <cls> dropped, pad / <eos> masked."""
    vocab = encoder.vocab
    hidden = encoder.encode(tokens)[:, 1:]
    rest = tokens[:, 1:]
    return hidden, (rest != vocab.pad) & (rest != vocab.eos)


class DownstreamModel(nn.Module):
    """Encoder (a corelib MaskedLM) plus a head on its residue states."""

    def __init__(self, encoder, outputs: int, protocol: Protocol):
        super().__init__()
        self.encoder, self.protocol = encoder, protocol
        self.head = Head(encoder.spec["embed_dim"], outputs, protocol)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(self.protocol.finetune_encoder and self.training and torch.is_grad_enabled()):
            states, mask = residue_states(self.encoder, tokens)
        return self.head(states, mask)


def _batch_labels(rows, protocol: Protocol, width: int) -> torch.Tensor:
    if protocol.level == "residue":
        out = np.full((len(rows), width), -100, dtype=np.int64)
        for b, r in enumerate(rows):
            n = min(len(r), width)
            out[b, :n] = np.asarray(r)[:n]
        return torch.from_numpy(out)
    if protocol.level == "pair":
        out = torch.full((len(rows), width, width), -1.0)
        for b, r in enumerate(rows):
            n = min(len(r), width)
            out[b, :n, :n] = torch.as_tensor(np.asarray(r)[:n, :n], dtype=torch.float32)
        return out
    return torch.as_tensor(np.asarray(rows))


def pair_weight(labels) -> float:
    """BCE weight of the positive pairs, sqrt(negatives / positives) over a training set of pair matrices:
    contacts and base pairs are a few in a thousand pairs, and unweighted BCE learns to predict none."""
    pos = sum(float((np.asarray(m) > 0).sum()) for m in labels)
    neg = sum(float((np.asarray(m) == 0).sum()) for m in labels)
    return float(np.sqrt(neg / pos)) if pos else 1.0


def _loss(protocol: Protocol, out, y, weight: float = 1.0):
    if protocol.level == "residue":   # labels per residue, -100 on padding
        return F.cross_entropy(out.transpose(1, 2), y, ignore_index=-100)
    if protocol.level == "pair":      # -1 marks pairs that do not count (padding, too close)
        keep = y >= 0
        if protocol.loss == "mse":
            return F.mse_loss(out[keep], y[keep])
        return F.binary_cross_entropy_with_logits(out[keep], y[keep], pos_weight=torch.tensor(weight, device=out.device))
    if protocol.loss == "ce":
        return F.cross_entropy(out, y)
    if protocol.loss == "bce":
        return F.binary_cross_entropy_with_logits(out, y.float())
    return F.mse_loss(out.squeeze(-1), y.float())


@torch.no_grad()
def encode_frozen(encoder, tokens: list, batch_size: int = 32, device="cpu") -> list[np.ndarray]:
    """Residue states (n_i x C, float32) of a frozen encoder for each token array, computed once."""
    encoder.eval().to(device)
    out = []
    order = np.argsort([len(t) for t in tokens], kind="stable")
    for start in range(0, len(order), batch_size):
        rows = [tokens[i] for i in order[start : start + batch_size]]
        x = torch.from_numpy(pad_batch([r.astype(np.int64) for r in rows], encoder.vocab.pad)).to(device)
        states, _ = residue_states(encoder, x)
        out.extend(s[: len(r) - 2].float().cpu().numpy() for s, r in zip(states, rows))
    result = [None] * len(tokens)
    for k, i in enumerate(order):
        result[i] = out[k]
    return result


def _feature_batch(feats, device):
    width = max(len(f) for f in feats)
    x = torch.zeros(len(feats), width, feats[0].shape[1])
    mask = torch.zeros(len(feats), width, dtype=torch.bool)
    for b, f in enumerate(feats):
        x[b, : len(f)] = torch.from_numpy(f)
        mask[b, : len(f)] = True
    return x.to(device), mask.to(device)


def train_head(encoder, protocol: Protocol, tokens: list, labels, outputs: int, seed: int = 0,
               epochs: int | None = None, device="cpu") -> DownstreamModel:
    """Train a head (and, if the protocol says so, the encoder) with AdamW; returns the trained model.
    The encoder passed in is copied, never modified. Labels: class / value (sequence), one per residue
    (residue), or an n x n matrix with -1 for pairs that do not count (pair)."""
    if len(tokens) != len(labels):
        raise InputError(f"{len(tokens)} sequences but {len(labels)} labels")
    torch.manual_seed(seed)
    model = DownstreamModel(copy.deepcopy(encoder), outputs, protocol).to(device)
    for p in model.encoder.parameters():
        p.requires_grad_(protocol.finetune_encoder)
    feats = None if protocol.finetune_encoder else encode_frozen(model.encoder, tokens, device=device)
    weight = pair_weight(labels) if protocol.level == "pair" and protocol.loss == "bce" else 1.0
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=protocol.lr, weight_decay=protocol.weight_decay)
    rng = np.random.default_rng(seed)
    for _ in range(protocol.epochs if epochs is None else epochs):
        model.train()
        order = rng.permutation(len(tokens))
        for start in range(0, len(order), protocol.batch_size):
            batch = order[start : start + protocol.batch_size]
            if feats is None:
                x = torch.from_numpy(pad_batch([tokens[i].astype(np.int64) for i in batch], encoder.vocab.pad)).to(device)
                out = model(x)
                width = x.shape[1] - 1
            else:
                states, mask = _feature_batch([feats[i] for i in batch], device)
                out = model.head(states, mask)
                width = states.shape[1]
            y = _batch_labels([labels[i] for i in batch], protocol, width).to(device)
            loss = _loss(protocol, out, y, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    return model


@torch.no_grad()
def predict(model: DownstreamModel, tokens: list, batch_size: int = 32, device="cpu"):
    """Head outputs per sequence: an (N, outputs) array (sequence level), or a list of (n_i, outputs)
    arrays (residue level) or of n_i x n_i score matrices (pair level)."""
    model.eval().to(device)
    outs = []
    for start in range(0, len(tokens), batch_size):
        rows = tokens[start : start + batch_size]
        x = torch.from_numpy(pad_batch([r.astype(np.int64) for r in rows], model.encoder.vocab.pad)).to(device)
        out = model(x).float().cpu().numpy()
        if model.protocol.level == "sequence":
            outs.append(out)
        elif model.protocol.level == "residue":
            outs.extend(o[: len(r) - 2] for o, r in zip(out, rows))
        else:
            outs.extend(o[: len(r) - 2, : len(r) - 2] for o, r in zip(out, rows))
    return np.concatenate(outs) if model.protocol.level == "sequence" else outs
