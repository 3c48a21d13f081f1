"""Composition features (Section 4.2 floor): what a probe can read from residue identities and positions alone.
The composition baselines fit the probes on these only (corelib.evaluation.baselines); the encoder's pair probe
and the incremental probes read them beside the encoder's features (corelib.evaluation.probes), so a gate
against the baseline asks what the encoder adds to them.

- k-mer frequencies of all j-mers, j = 1..k (k <= MAX_K of the modality) for sequence tasks; the incremental
  probe's composition block is those of j <= BLOCK_K (20 features in either modality: its fit stays cheap);
- a one-hot window of +-WINDOW residues for residue tasks;
- a one-hot of both residues' identities (their outer product) and of the binned separation |i - j| for pairs.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from corelib.data.tokens import get_vocab

MAX_K = {"rna": 4, "protein": 2}

BLOCK_K = {"rna": 2, "protein": 1}   # the incremental probe's k-mers: 4 + 16 nucleotide / 20 amino-acid frequencies

WINDOW = 7

SEPARATION_BINS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256)


def residue_codes(tokens: np.ndarray, modality: str) -> np.ndarray:
    """Composition baselines (Section 4.2): residue letters of a token array (<cls>, <eos> dropped) as 0..A-1 over the standard alphabet, A
    for anything else."""
    ids = get_vocab(modality).standard_ids
    lookup = np.full(256, len(ids), dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    return lookup[np.asarray(tokens, dtype=np.int64)[1:-1]]


def kmer_features(tokens: list, modality: str, k: int) -> np.ndarray:
    """k-mer baseline (Section 4.2): frequencies of every j-mer of standard residues, j = 1..k (one block per j, each summing to 1 when
    the sequence has a j-mer): (N, A + A^2 + ... + A^k)."""
    size = len(get_vocab(modality).standard_ids)
    blocks = []
    for j in range(1, k + 1):
        out = np.zeros((len(tokens), size**j))
        for row, t in enumerate(tokens):
            codes = residue_codes(t, modality)
            if len(codes) < j:
                continue
            win = np.lib.stride_tricks.sliding_window_view(codes, j)
            win = win[(win < size).all(1)]
            if len(win):
                idx = win @ (size ** np.arange(j - 1, -1, -1))
                out[row] = np.bincount(idx, minlength=size**j) / len(win)
        blocks.append(out)
    return np.concatenate(blocks, axis=1)


def kmer_candidates(splits: dict, modality: str, ks=None) -> dict:
    """Section 4.2 k-mer probe: {k: (X_train, X_valid, X_test)} for k in `ks` (default 1..MAX_K of the modality),
    from a task's splits ({split: Split})."""
    ks = range(1, MAX_K[modality] + 1) if ks is None else ks
    return {k: tuple(kmer_features(splits[s].tokens, modality, k) for s in ("train", "valid", "test")) for k in ks}


def window_features(tokens: np.ndarray, modality: str, width: int = WINDOW) -> sp.csr_matrix:
    """Residue baseline (Section 4.2, Table 3 SS): one-hot of the residues at offsets -width..width of each position (A letters, other, outside):
    an (n, (2 width + 1)(A + 2)) sparse matrix."""
    codes = residue_codes(tokens, modality)
    letters = len(get_vocab(modality).standard_ids) + 2
    n = len(codes)
    padded = np.concatenate([np.full(width, letters - 1), codes, np.full(width, letters - 1)])
    offsets = np.arange(2 * width + 1)
    cols = offsets[None, :] * letters + padded[np.arange(n)[:, None] + offsets[None, :]]
    rows = np.repeat(np.arange(n), len(offsets))
    return sp.csr_matrix((np.ones(rows.size), (rows, cols.ravel())), shape=(n, len(offsets) * letters))


def pair_onehot(tokens: np.ndarray, modality: str, i: np.ndarray, j: np.ndarray) -> sp.csr_matrix:
    """Pair baseline (Section 4.2, Tables 2a, 2c): one-hot of (residue i, residue j) (outer product of the identities) and of the bin of |i - j|
    (SEPARATION_BINS) for the pairs (i, j): a (P, (A + 1)^2 + bins + 1) sparse matrix."""
    codes = residue_codes(tokens, modality)
    letters = len(get_vocab(modality).standard_ids) + 1
    ident = codes[i] * letters + codes[j]
    sep = letters**2 + np.digitize(np.abs(j - i), SEPARATION_BINS)
    rows = np.repeat(np.arange(len(i)), 2)
    cols = np.stack([ident, sep], 1).ravel()
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(len(i), letters**2 + len(SEPARATION_BINS) + 1))
