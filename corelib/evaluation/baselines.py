"""What composition alone gets (Section 4.2 floor): every task scored with the SAME probe as the encoders
(corelib.evaluation.probes) on features that know only residue identities and positions:

- sequence tasks: frequencies of all j-mers, j = 1..k (k <= 4 for RNA, <= 2 for protein), k and the L2
  strength chosen on the valid split ("composition:kmer");
- residue tasks: one-hot of the residues in a window of +-7 ("composition:onehot-window");
- pair tasks: one-hot of the two residues' identities (their outer product) plus a one-hot of the binned
  separation |i - j| ("composition:onehot-pair"), on the same drawn train pairs as the attention probe.

The rows form one cell, BASELINE_CELL ("Composition"); the `protocol` column names the features.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from corelib.data.tokens import get_vocab
from corelib.evaluation.features import pair_pool, upper_pairs
from corelib.evaluation.probes import probe_pairs, probe_residues, probe_sequences
from corelib.evaluation.registry import select_tasks
from corelib.evaluation.scoring import Evaluation
from corelib.evaluation.task_data import SPLITS, TaskData

BASELINE_CELL = "Composition"

MAX_K = {"rna": 4, "protein": 2}

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


def _baseline_task(data: TaskData, modality: str, seed: int) -> Evaluation:
    task = data.task
    if task.level == "sequence":
        cands = {k: tuple(kmer_features(data.splits[s].tokens, modality, k) for s in SPLITS)
                 for k in range(1, MAX_K[modality] + 1)}
        outputs, info = probe_sequences(data, cands, seed)
        extra = {"k": info["choice"], "C": info["C"], f"valid {task.primary}": info["valid"]}
    elif task.level == "residue":
        cands = {WINDOW: tuple([window_features(t, modality) for t in data.splits[s].tokens] for s in SPLITS)}
        outputs, info = probe_residues(data, cands, seed)
        extra = {"window": WINDOW, f"valid {task.primary}": info["valid"]}
    else:
        regression = task.label_kind.regression
        train = []
        for k, (t, lab) in enumerate(zip(data.train.tokens, data.train.labels)):
            i, j, y = pair_pool(np.asarray(lab), k, regression)
            train.append((i, j, y, pair_onehot(t, modality, i, j)))
        test = []
        for t, lab in zip(data.test.tokens, data.test.labels):
            i, j = upper_pairs(np.asarray(lab))
            test.append((i, j, np.asarray(lab)[i, j], pair_onehot(t, modality, i, j)))
        outputs = probe_pairs(task, train, test, [len(t) - 2 for t in data.test.tokens], seed)
        extra = {}
    return data.finish(outputs, task.baseline, extra)


def evaluate_baselines(modality: str, preset, seed: int = 0, tasks=None) -> Evaluation:
    """The composition baselines of every available task of a modality (one cell, "Composition"): the
    probes of Section 4.2's evaluation on identity-only features, same splits, limits and seed."""
    limits = (preset.downstream.train, preset.downstream.test)
    parts = [_baseline_task(TaskData.load(t, modality, preset.data.max_tokens, limits, seed), modality, seed)
             for t in select_tasks(modality, tasks)]
    return Evaluation.concat(parts)
