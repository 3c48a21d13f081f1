"""Probes of a frozen encoder (Section 4.2; the default protocol, Appendix B's heads are `protocol="heads"`).

- sequence tasks: a linear probe (scikit-learn logistic / ridge regression on standardised features) on
  the mean-pooled residue states of EVERY transformer layer; the layer and the L2 strength are chosen on
  the VALID split; the test metric of that choice is reported.
- residue tasks: the same per residue (a seeded sample of RESIDUE_TRAIN train residues), layer chosen on valid.
- pair tasks (RNA base pairs, protein contacts, distance maps): logistic (ridge) regression on the
  symmetrised, APC-corrected attention maps of all layers and heads (Rao et al. 2020): the features of
  pair (i, j) are the layers x heads APC values; train pairs with |i - j| >= the task's minimum separation,
  every positive (at most POSITIVES_PER_SEQ per sequence) and NEGATIVES_PER_POSITIVE times as many negatives.

The same fitting functions serve the composition baselines (corelib.evaluation.baselines) with other
features, so encoder and baseline rows differ only in their features. `seed` seeds every draw and solver.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from corelib.evaluation.features import fingerprint, probe_layers, split_features
from corelib.evaluation.kinds import as_float64
from corelib.evaluation.registry import Task, select_tasks
from corelib.evaluation.scoring import Evaluation
from corelib.evaluation.task_data import SPLITS, TaskData

STRENGTHS = (0.01, 0.1, 1.0)     # C (inverse L2 strength) tried on valid by the sequence probes

RESIDUE_C = 1.0

PAIR_C = 1.0

RESIDUE_TRAIN = 20_000           # train residues drawn (seeded) for a residue probe

POSITIVES_PER_SEQ = 64           # train pairs per sequence: at most this many positives ...

NEGATIVES_PER_POSITIVE = 3       # ... and this many negatives per positive (at least MIN_NEGATIVES)

MIN_NEGATIVES = 32

FILL = -1e9                      # score of the pairs that do not count (too close, unknown)


# ----------------------------------------------------------------------------- fitting
def single_threaded(fn):
    """Section 4.2 probes: run `fn` with one BLAS / OpenMP thread. The probes' fits are small, and on a shared
    machine threads spin-waiting for each other made them 100x slower (measured: 3.3 s instead of 0.03 s to
    fit 800 x 128 features, 10 classes)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with threadpool_limits(1):
            return fn(*args, **kwargs)

    return wrapper


def _fit(model, x, y):
    x = as_float64(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)   # a multilabel column with one class in train
        return model.fit(x, y)


def _better(got: float, best) -> bool:
    """Whether a valid metric beats the best so far (the first candidate wins ties; NaN never wins)."""
    return best is None or (not np.isnan(got) and (np.isnan(best[0]) or got > best[0]))


def _rows(x):
    return sp.vstack(x, format="csr") if sp.issparse(x[0]) else np.concatenate(x).astype(np.float32)


# ----------------------------------------------------------------------------- sequence and residue probes
@single_threaded
def probe_sequences(data: TaskData, candidates: dict, seed: int, strengths=STRENGTHS):
    """Section 4.2 sequence probe: fit a linear probe for each candidate feature set {name: (X_train, X_valid, X_test)} and strength,
    choose the best on the valid split's primary metric; returns (test outputs, choice, valid metric)."""
    kind, k = data.task.label_kind, data.outputs
    y_tr = np.asarray(data.train.labels)
    best = None
    for name, (x_tr, x_va, x_te) in candidates.items():
        for c in strengths:
            model = _fit(kind.estimator(c, seed, sp.issparse(x_tr)), x_tr, y_tr)
            got = data.primary(kind.read(model, x_va, k))
            if _better(got, best):
                best = (got, name, c, model, x_te)
    got, name, c, model, x_te = best
    return kind.read(model, x_te, k), {"choice": name, "C": c, "valid": got}


def _residue_sample(labels: list, seed: int, limit: int):
    """(chain, position) of at most `limit` train residues, drawn with `seed`."""
    chain = np.concatenate([np.full(len(lab), k) for k, lab in enumerate(labels)])
    pos = np.concatenate([np.arange(len(lab)) for lab in labels])
    if len(chain) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(chain), size=limit, replace=False))
        chain, pos = chain[keep], pos[keep]
    return chain, pos


@single_threaded
def probe_residues(data: TaskData, candidates: dict, seed: int, strength: float = RESIDUE_C,
                   limit: int = RESIDUE_TRAIN):
    """Section 4.2 residue probe (Table 3 SS): a per-residue linear probe for each candidate {name: (train, valid, test) lists of per-sequence (n_i, d)
    feature matrices}; the best on valid; returns (test outputs as a list of (n_i, K), choice, valid metric)."""
    kind, k = data.task.label_kind, data.outputs
    labels = data.train.labels
    chain, pos = _residue_sample(labels, seed, limit)
    y = np.array([labels[c][p] for c, p in zip(chain, pos)])

    def predict(model, feats):
        out = kind.read(model, _rows(feats), k)
        return np.split(out, np.cumsum([f.shape[0] for f in feats])[:-1])

    offsets = np.concatenate([[0], np.cumsum([len(lab) for lab in labels])[:-1]])
    rows = offsets[chain] + pos
    best = None
    for name, (tr, va, te) in candidates.items():
        x = _rows(tr)[rows]
        model = _fit(kind.estimator(strength, seed, sp.issparse(x)), x, y)
        got = data.primary(predict(model, va))
        if _better(got, best):
            best = (got, name, model, te)
    got, name, model, te = best
    return predict(model, te), {"choice": name, "C": strength, "valid": got}


# ----------------------------------------------------------------------------- pair probes
def draw_pairs(pool: list, seed: int, regression: bool = False) -> list[np.ndarray]:
    """Rao et al. 2020 probe, seeded draw: per train sequence, the indices into its candidate pairs (i, j, y) drawn with `seed`: at most
    POSITIVES_PER_SEQ positives and NEGATIVES_PER_POSITIVE times as many negatives (at least MIN_NEGATIVES);
    regression: POSITIVES_PER_SEQ x (1 + NEGATIVES_PER_POSITIVE) pairs."""
    rng = np.random.default_rng(seed)
    out = []
    for _, _, y in pool:
        if regression:
            out.append(np.sort(rng.permutation(len(y))[: POSITIVES_PER_SEQ * (1 + NEGATIVES_PER_POSITIVE)]))
            continue
        pos, neg = np.flatnonzero(y > 0), np.flatnonzero(y == 0)
        pos = rng.permutation(pos)[:POSITIVES_PER_SEQ]
        neg = rng.permutation(neg)[: max(MIN_NEGATIVES, NEGATIVES_PER_POSITIVE * len(pos))]
        out.append(np.sort(np.concatenate([pos, neg])))
    return out


@single_threaded
def probe_pairs(task: Task, train: list, test: list, lengths: list, seed: int, strength: float = PAIR_C):
    """Pair probe (Rao et al. 2020): train on drawn pairs of `train` [(i, j, y, X)], score every pair of `test`
    [(i, j, y, X)]; returns per test sequence an n x n score matrix (FILL where a pair does not count)."""
    kind = task.label_kind
    regression = kind.regression
    picks = draw_pairs([(i, j, y) for i, j, y, _ in train], seed, regression)
    x = _rows([feats[p] for (_, _, _, feats), p in zip(train, picks)])
    y = np.concatenate([yy[p] for (_, _, yy, _), p in zip(train, picks)])
    if not regression:
        y = (y > 0).astype(int)
    model = _fit(kind.estimator(strength, seed, sp.issparse(x)), x.astype(np.float32) if not sp.issparse(x) else x, y)
    outs = []
    for (i, j, _, feats), n in zip(test, lengths):
        m = np.full((n, n), FILL)
        if len(i):
            s = kind.read(model, feats.astype(np.float32) if not sp.issparse(feats) else feats)
            m[i, j] = m[j, i] = s
        outs.append(m)
    return outs


# ----------------------------------------------------------------------------- the encoder probes
def _dataset_features(encoder, group: list, data: dict, fp: str, device, max_tokens: int) -> dict:
    """Frozen features of each split of one labelled set, shared by the tasks of `group` (cached per encoder)."""
    first = data[group[0].name]
    pair_task = next((t for t in group if t.level == "pair"), None)
    residues = any(t.level == "residue" for t in group)
    only_pairs = all(t.level == "pair" for t in group)
    out = {}
    for split in SPLITS:
        if split == "valid" and only_pairs:     # the pair probe chooses nothing on valid
            continue
        part = first.splits[split]
        labels = data[pair_task.name].splits[split].labels if pair_task else None
        key = (group[0].dataset, split, max_tokens, tuple(part.ids), residues, pair_task.kind if pair_task else None)
        out[split] = split_features(encoder, part.tokens, residues=residues, pair_labels=labels, train=split == "train",
                                    regression=pair_task is not None and pair_task.label_kind.regression,
                                    device=device, cache=(fp, key))
    return out


def _probe_task(data: TaskData, feats: dict, seed: int, layers: list[int]) -> Evaluation:
    task = data.task
    if task.level == "pair":
        test_lengths = [len(t) - 2 for t in data.test.tokens]
        return data.finish(probe_pairs(task, feats["train"].pairs, feats["test"].pairs, test_lengths, seed), task.probe)
    if task.level == "sequence":
        cands = {layer: tuple(feats[s].pooled[:, k] for s in SPLITS) for k, layer in enumerate(layers)}
        outputs, info = probe_sequences(data, cands, seed)
    else:
        cands = {layer: tuple([r[k] for r in feats[s].residues] for s in SPLITS) for k, layer in enumerate(layers)}
        outputs, info = probe_residues(data, cands, seed)
    return data.finish(outputs, task.probe, {"layer": info["choice"], "C": info["C"], f"valid {task.primary}": info["valid"]})


def probe_encoder(encoder, modality: str, preset, seed: int = 0, device="cpu", tasks=None) -> Evaluation:
    """Probe a frozen encoder on every available task of a modality (Section 4.2 with the probes of this
    module): features once per labelled set (and per encoder, across seeds), then one probe per task."""
    chosen = select_tasks(modality, tasks)
    if not chosen:
        return Evaluation()
    fp = fingerprint(encoder)
    limits = (preset.downstream.train, preset.downstream.test)
    max_tokens = preset.data.max_tokens
    parts = []
    for dataset in dict.fromkeys(t.dataset for t in chosen):
        group = [t for t in chosen if t.dataset == dataset]
        data = {t.name: TaskData.load(t, modality, max_tokens, limits, seed) for t in group}
        feats = _dataset_features(encoder, group, data, fp, device, max_tokens)
        parts += [_probe_task(data[t.name], feats, seed, probe_layers(encoder)) for t in group]
    return Evaluation.concat(parts)
