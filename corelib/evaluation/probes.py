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
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from corelib.evaluation.features import fingerprint, probe_layers, split_features
from corelib.evaluation.registry import SPLITS, Task, select_tasks, task_data
from corelib.evaluation.scoring import Evaluation, evaluation, pair_density, score

STRENGTHS = (0.01, 0.1, 1.0)     # C (inverse L2 strength) tried on valid by the sequence probes

RESIDUE_C = 1.0

PAIR_C = 1.0

RESIDUE_TRAIN = 20_000           # train residues drawn (seeded) for a residue probe

POSITIVES_PER_SEQ = 64           # train pairs per sequence: at most this many positives ...

NEGATIVES_PER_POSITIVE = 3       # ... and this many negatives per positive (at least MIN_NEGATIVES)

MIN_NEGATIVES = 32

MAX_ITER = 1000

PROBE_TOL = 1e-8                 # gradient tolerance of the logistic probes' Newton solves (float64)

FILL = -1e9                      # score of the pairs that do not count (too close, unknown)


# ----------------------------------------------------------------------------- estimators
def linear_model(kind: str, strength: float, seed: int, sparse: bool = False):
    """Section 4.2 linear probe of a task kind (scikit-learn): logistic regression (classes, labels, pairs) or
    ridge regression (values), on standardised features (one-hot features are left unscaled). Both are solved
    to the optimum, not to an iterative solver's stopping point (logistic: Newton-Cholesky in float64 to a
    gradient of PROBE_TOL; ridge: a direct solve), so the accuracy is a property of the features: an L-BFGS fit
    stopped at sklearn's tolerance moved with the machine's BLAS kernel, and with it the probes' accuracy."""
    kind = kind.split(":")[0]
    if kind in ("regression", "distance"):
        est = Ridge(alpha=1.0 / strength)
    else:
        est = LogisticRegression(C=strength, solver="newton-cholesky", tol=PROBE_TOL, max_iter=MAX_ITER,
                                 random_state=seed)
        if kind == "multilabel":
            est = OneVsRestClassifier(est)
    return est if sparse else make_pipeline(StandardScaler(), est)


def single_threaded(fn):
    """Section 4.2 probes: run `fn` with one BLAS / OpenMP thread. The probes' fits are small, and on a shared
    machine threads spin-waiting for each other made them 100x slower (measured: 3.3 s instead of 0.03 s to
    fit 800 x 128 features, 10 classes)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with threadpool_limits(1):
            return fn(*args, **kwargs)

    return wrapper


def _float64(x):
    """Probe inputs in float64 (the features are stored in float32 / float16): the solve is exact to float64."""
    return x.astype(np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)


def _fit(model, x, y):
    x = _float64(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)   # a multilabel column with one class in train
        return model.fit(x, y)


def predict_outputs(model, x, kind: str, n_classes: int = 0) -> np.ndarray:
    """Section 4.2 probe outputs, as `scoring.score` reads them: (N, K) class probabilities (every class, also those absent from
    the train rows), (N, K) label probabilities, decision values (pairs) or predictions (values)."""
    kind, x = kind.split(":")[0], _float64(x)
    if kind in ("regression", "distance"):
        return np.asarray(model.predict(x), dtype=float)
    if kind in ("pairs", "contacts"):
        return np.asarray(model.decision_function(x), dtype=float)
    prob = model.predict_proba(x)
    if kind == "multilabel":
        return prob
    out = np.zeros((prob.shape[0], n_classes))
    out[:, model.classes_.astype(int)] = prob
    return out


def _n_classes(task: Task, data: dict) -> int:
    return {"binary": 2, "ss3": 3}.get(task.kind, len(data["classes"] or []))


def _valid_metric(task: Task, outputs, labels) -> float:
    if len(labels) == 0:
        return float("nan")
    return float(score(task, outputs, labels).values[task.name][task.primary])


def _better(got: float, best) -> bool:
    """Whether a valid metric beats the best so far (the first candidate wins ties; NaN never wins)."""
    return best is None or (not np.isnan(got) and (np.isnan(best[0]) or got > best[0]))


def _rows(x):
    return sp.vstack(x, format="csr") if sp.issparse(x[0]) else np.concatenate(x).astype(np.float32)


# ----------------------------------------------------------------------------- sequence and residue probes
@single_threaded
def probe_sequences(task: Task, candidates: dict, data: dict, seed: int, strengths=STRENGTHS):
    """Section 4.2 sequence probe: fit a linear probe for each candidate feature set {name: (X_train, X_valid, X_test)} and strength,
    choose the best on the valid split's primary metric; returns (test outputs, choice, valid metric)."""
    y_tr, y_va = np.asarray(data["train"][1]), np.asarray(data["valid"][1])
    k = _n_classes(task, data)
    best = None
    for name, (x_tr, x_va, x_te) in candidates.items():
        for c in strengths:
            model = _fit(linear_model(task.kind, c, seed, sp.issparse(x_tr)), x_tr, y_tr)
            got = _valid_metric(task, predict_outputs(model, x_va, task.kind, k), y_va)
            if _better(got, best):
                best = (got, name, c, model, x_te)
    got, name, c, model, x_te = best
    return predict_outputs(model, x_te, task.kind, k), {"choice": name, "C": c, "valid": got}


def _residue_sample(labels: list, seed: int, limit: int):
    """(chain, position) of at most `limit` train residues, drawn with `seed`."""
    chain = np.concatenate([np.full(len(lab), k) for k, lab in enumerate(labels)])
    pos = np.concatenate([np.arange(len(lab)) for lab in labels])
    if len(chain) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(chain), size=limit, replace=False))
        chain, pos = chain[keep], pos[keep]
    return chain, pos


@single_threaded
def probe_residues(task: Task, candidates: dict, data: dict, seed: int, strength: float = RESIDUE_C,
                   limit: int = RESIDUE_TRAIN):
    """Section 4.2 residue probe (Table 3 SS): a per-residue linear probe for each candidate {name: (train, valid, test) lists of per-sequence (n_i, d)
    feature matrices}; the best on valid; returns (test outputs as a list of (n_i, K), choice, valid metric)."""
    labels = data["train"][1]
    chain, pos = _residue_sample(labels, seed, limit)
    y = np.array([labels[c][p] for c, p in zip(chain, pos)])
    k = _n_classes(task, data)

    def predict(model, feats):
        out = predict_outputs(model, _rows(feats), task.kind, k)
        return np.split(out, np.cumsum([f.shape[0] for f in feats])[:-1])

    offsets = np.concatenate([[0], np.cumsum([len(lab) for lab in labels])[:-1]])
    rows = offsets[chain] + pos
    best = None
    for name, (tr, va, te) in candidates.items():
        x = _rows(tr)[rows]
        model = _fit(linear_model(task.kind, strength, seed, sp.issparse(x)), x, y)
        got = _valid_metric(task, predict(model, va), data["valid"][1])
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
    regression = task.kind == "distance"
    picks = draw_pairs([(i, j, y) for i, j, y, _ in train], seed, regression)
    x = _rows([feats[p] for (_, _, _, feats), p in zip(train, picks)])
    y = np.concatenate([yy[p] for (_, _, yy, _), p in zip(train, picks)])
    if not regression:
        y = (y > 0).astype(int)
    model = _fit(linear_model(task.kind, strength, seed, sp.issparse(x)), x.astype(np.float32) if not sp.issparse(x) else x, y)
    outs = []
    for (i, j, _, feats), n in zip(test, lengths):
        m = np.full((n, n), FILL)
        if len(i):
            s = predict_outputs(model, feats.astype(np.float32) if not sp.issparse(feats) else feats, task.kind)
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
        tokens = first[split][0]
        labels = data[pair_task.name][split][1] if pair_task else None
        key = (group[0].dataset, split, max_tokens, tuple(first["ids"][split]), residues,
               pair_task.kind if pair_task else None)
        out[split] = split_features(encoder, tokens, residues=residues, pair_labels=labels, train=split == "train",
                                    regression=pair_task is not None and pair_task.kind == "distance",
                                    device=device, cache=(fp, key))
    return out


def _probe_task(task: Task, data: dict, feats: dict, seed: int, layers: list[int]) -> Evaluation:
    if task.level == "pair":
        test_lengths = [len(t) - 2 for t in data["test"][0]]
        outputs = probe_pairs(task, feats["train"].pairs, feats["test"].pairs, test_lengths, seed)
        density = pair_density(data["train"][1]) if task.kind == "pairs" else 0.0
        scored = score(task, outputs, data["test"][1], data["ids"]["test"], density)
        return evaluation(task, scored, seed, task.probe)
    if task.level == "sequence":
        cands = {layer: tuple(feats[s].pooled[:, k] for s in SPLITS) for k, layer in enumerate(layers)}
        outputs, info = probe_sequences(task, cands, data, seed)
    else:
        cands = {layer: tuple([r[k] for r in feats[s].residues] for s in SPLITS) for k, layer in enumerate(layers)}
        outputs, info = probe_residues(task, cands, data, seed)
    scored = score(task, outputs, data["test"][1], data["ids"]["test"])
    return evaluation(task, scored, seed, task.probe,
                      {"layer": info["choice"], "C": info["C"], f"valid {task.primary}": info["valid"]})


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
        data = {t.name: task_data(t, modality, max_tokens, limits, seed) for t in group}
        feats = _dataset_features(encoder, group, data, fp, device, max_tokens)
        parts += [_probe_task(t, data[t.name], feats, seed, probe_layers(encoder)) for t in group]
    return Evaluation.concat(parts)
