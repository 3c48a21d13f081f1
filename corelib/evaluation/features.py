"""Frozen features of an encoder for the probes (Section 4.2): the residue states of every transformer
layer and, for pair tasks, the symmetrised, APC-corrected attention maps of all layers and heads
(Rao et al. 2020, "Transformer protein language models are unsupervised structure learners").

One forward pass per sequence gives everything (fair-esm's `repr_layers` and `need_head_weights`, under
torch.no_grad()); the features of the last encoder evaluated are cached (keyed by a hash of its
parameters), so the seeds of one cell share them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from corelib.data.tokens import pad_batch

ATTENTION_BUDGET = 2**27     # floats of attention maps per batch (B x layers x heads x T x T)

NEGATIVE_POOL = 1024         # negatives kept per train sequence (a fixed draw); each seed samples from them

POSITIVE_POOL = 256

MAX_LAYERS = 12              # layers offered to the layer choice (evenly spaced; all of them up to 12 layers)

HALF_ABOVE = 64              # attention maps per pair above which pair features are kept as float16 (memory)


def symmetric_apc(maps) -> np.ndarray:
    """Rao et al. 2020: A_sym = A + A^T, then APC(F)_ij = F_ij - F_i. F_.j / F_.. (row, column and total
    sums), for every map of a (..., n, n) array."""
    a = np.asarray(maps, dtype=np.float64)
    f = a + np.swapaxes(a, -1, -2)
    row, col = f.sum(-1, keepdims=True), f.sum(-2, keepdims=True)
    return f - row * col / np.maximum(f.sum((-1, -2), keepdims=True), 1e-12)


def apc_at(maps: np.ndarray, i, j) -> np.ndarray:
    """Rao et al. 2020 APC at pairs: symmetric_apc(maps)[:, i, j] of (F, n, n) maps at index arrays i, j,
    without building the full maps: with r = row sums of A + A^T (= row + column sums of A),
    APC_ij = A_ij + A_ji - r_i r_j / sum(r). NumPy, single-threaded (torch's small ops spin-wait on a
    shared machine)."""
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    n = maps.shape[-1]
    flat = maps.reshape(maps.shape[0], n * n)
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    r = maps.sum(-1) + maps.sum(-2)
    total = np.maximum(r.sum(-1, keepdims=True), 1e-12)
    return flat[:, i * n + j] + flat[:, j * n + i] - r[:, i] * r[:, j] / total


def probe_layers(encoder) -> list[int]:
    """Section 4.2 probes: the layers whose states the probes read, 1..n (at most MAX_LAYERS of them, evenly
    spaced, the last always in). Layer 0, the token embedding, is a lookup table: the composition baselines
    cover it."""
    n = encoder.n_layers
    return sorted({int(round(v)) for v in np.linspace(1, n, min(n, MAX_LAYERS))})


@torch.no_grad()
def forward_features(encoder, tokens: list, attention: bool = False, device="cpu", batch_size: int = 32):
    """Section 4.2 frozen features (fair-esm repr_layers, need_head_weights): yield (index, states
    (len(probe_layers), n, C) float32, attention (layers x heads, n, n) float32 or None) per token array,
    <cls> and <eos> dropped, in batches of similar length."""
    encoder.eval().to(device)
    layers = probe_layers(encoder)
    order = np.argsort([len(t) for t in tokens], kind="stable")
    start = 0
    while start < len(order):
        width = len(tokens[order[min(start + batch_size, len(order)) - 1]])
        size = batch_size
        if attention:
            maps = encoder.n_layers * int(encoder.spec["heads"]) * width * width
            size = max(1, min(batch_size, ATTENTION_BUDGET // maps))
        rows = order[start : start + size]
        start += size
        x = torch.from_numpy(pad_batch([tokens[i].astype(np.int64) for i in rows], encoder.vocab.pad)).to(device)
        reps, attn = encoder.states(x, layers, attention)
        attn = attn.float().flatten(1, 2).cpu().numpy() if attention else None
        reps = reps.float().cpu().numpy()
        for b, i in enumerate(rows):
            n = len(tokens[i]) - 2
            yield int(i), reps[b, :, 1 : n + 1], (attn[b, :, 1 : n + 1, 1 : n + 1] if attention else None)


def fingerprint(encoder) -> str:
    """Section 4.2 feature cache key: a hash of an encoder's parameters and buffers."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{encoder.family.name}:{encoder.modality}".encode())
    for name, t in encoder.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def upper_pairs(labels: np.ndarray):
    """Tables 2a, 2c, 3: (i, j) with i < j of the pairs that count (label >= 0) of an n x n label matrix."""
    i, j = np.triu_indices(len(labels), k=1)
    keep = labels[i, j] >= 0
    return i[keep], j[keep]


def pair_pool(labels: np.ndarray, index: int, regression: bool = False):
    """Rao et al. 2020 probe, train pairs: the candidates of one sequence, a fixed draw: every positive (at most POSITIVE_POOL) and at
    most NEGATIVE_POOL negatives (regression: at most both pools' sum of pairs). Returns (i, j, y)."""
    i, j = upper_pairs(labels)
    y = labels[i, j]
    rng = np.random.default_rng([7919, index])
    if regression:
        keep = rng.permutation(len(i))[: POSITIVE_POOL + NEGATIVE_POOL]
    else:
        pos, neg = np.flatnonzero(y > 0), np.flatnonzero(y == 0)
        keep = np.concatenate([rng.permutation(pos)[:POSITIVE_POOL], rng.permutation(neg)[:NEGATIVE_POOL]])
    keep = np.sort(keep)
    return i[keep], j[keep], y[keep]


@dataclass
class SplitFeatures:
    """Frozen features of one split of a labelled set: pooled (N, layers, C) means over residues; residues
    (per sequence (layers, n, C) float16) if a residue task needs them; pairs: per sequence (i, j, y,
    features (P, layers x heads), float32 up to HALF_ABOVE maps), the train pool or every pair that counts."""

    pooled: np.ndarray
    residues: list | None = None
    pairs: list | None = None


_CACHE: dict = {"key": None, "splits": {}}


def split_features(encoder, tokens: list, *, residues: bool = False, pair_labels: list | None = None,
                   train: bool = False, regression: bool = False, device="cpu", cache=None) -> SplitFeatures:
    """Frozen features of one split (Section 4.2): every sequence through the encoder once. With
    `pair_labels`, attention features of the train pair pool (`train`) or of every pair that counts.
    `cache` = (encoder fingerprint, split key): kept until an encoder with another fingerprint comes."""
    if cache is not None:
        fp, key = cache
        if _CACHE["key"] != fp:
            _CACHE.update(key=fp, splits={})
        hit = _CACHE["splits"].get(key)
        if hit is not None:
            return hit
    pooled = [None] * len(tokens)
    res = [None] * len(tokens) if residues else None
    pairs = [None] * len(tokens) if pair_labels is not None else None
    for k, states, attn in forward_features(encoder, tokens, attention=pair_labels is not None, device=device):
        pooled[k] = states.mean(1)
        if res is not None:
            res[k] = states.astype(np.float16)
        if pairs is not None:
            lab = np.asarray(pair_labels[k])
            if train:
                i, j, y = pair_pool(lab, k, regression)
            else:
                i, j = upper_pairs(lab)
                y = lab[i, j]
            feats = np.ascontiguousarray(apc_at(attn, i, j).T)
            pairs[k] = (i, j, y, feats.astype(np.float16) if feats.shape[1] > HALF_ABOVE else feats)
    out = SplitFeatures(np.stack(pooled) if tokens else np.zeros((0, 0, 0), np.float32), res, pairs)
    if cache is not None:
        _CACHE["splits"][cache[1]] = out
    return out


def clear_cache() -> None:
    """Section 4.2 probes: forget the cached frozen features."""
    _CACHE.update(key=None, splits={})
