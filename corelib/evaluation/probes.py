"""Probes of a frozen encoder (Section 4.2; the default protocol, Appendix B's heads are `protocol="heads"`).

- sequence tasks: a linear probe (scikit-learn logistic / ridge regression on standardised features) on
  the mean-pooled residue states of EVERY transformer layer; the layer and the L2 strength are chosen on
  the VALID split; the test metric of that choice is reported.
- residue tasks: the same per residue (a seeded sample of RESIDUE_TRAIN train residues): the layer chosen on
  valid at C = RESIDUE_C, then C on that layer.
- pair tasks (RNA base pairs, protein contacts, distance maps): logistic (ridge) regression on the
  symmetrised, APC-corrected attention maps of all layers and heads (Rao et al. 2020), standardised, beside the
  pair baseline's one-hots of both residues' identities and of the separation bin
  (`corelib.evaluation.composition.pair_onehot`): the baseline's features plus the attention maps, so that a
  gate against the baseline asks what attention adds. Train pairs with |i - j| >= the task's minimum
  separation, every positive (at most POSITIVES_PER_SEQ per sequence) and NEGATIVES_PER_POSITIVE times as many
  negatives; C = PAIR_C (nothing is chosen on valid).
- the incremental probe (variant "+composition" of a sequence task): the pooled states of the layer the
  encoder's probe chose beside a composition block (k-mer frequencies up to `composition.BLOCK_K`: 20 features),
  C chosen on valid; its baseline row is the same block alone, so the gate asks what the encoder adds to it.

The L2 strength C is chosen on valid from STRENGTHS (factors of STRENGTH_STEP apart) and the grid is extended by
that factor beyond an edge for as long as the edge value is strictly best on valid, within STRENGTH_BOUNDS: the
chosen C is interior to the values tried unless it is one of the bounds (reported as the row "C").

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

from corelib.evaluation.composition import BLOCK_K, kmer_candidates, pair_onehot
from corelib.evaluation.features import fingerprint, probe_layers, split_features
from corelib.evaluation.kinds import as_float64
from corelib.evaluation.registry import INCREMENTAL, VARIANTS, Task, select_tasks
from corelib.evaluation.results import Evaluation
from corelib.evaluation.task_data import SPLITS, TaskData

STRENGTHS = (0.01, 0.1, 1.0)     # C (inverse L2 strength) first tried on valid by the sequence probes ...

STRENGTH_STEP = 10.0             # ... extended by this factor beyond an edge that is best on valid ...

STRENGTH_BOUNDS = (1e-5, 1e3)    # ... never past these (at most 3 steps below the grid and 3 above it)

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
def _step(c: float, factor: float) -> float:
    return float(f"{c * factor:.12g}")   # 0.01 / 10 is 0.001, not 0.0009999999999999998


def _search(evaluate, name, strengths, bounds, step: float, tried: list):
    """One candidate's best (valid metric, C, payload): its grid, then past a winning edge (`choose_strength`)."""
    best = None
    for c in strengths:
        got, payload = evaluate(name, c)
        tried.append(c)
        if _better(got, best):
            best = (got, c, payload)
    lo, hi = bounds
    while True:
        c = best[1]
        moves = [new for new, edge in ((_step(c, 1 / step), min(tried)), (_step(c, step), max(tried)))
                 if c == edge and lo * (1 - 1e-9) <= new <= hi * (1 + 1e-9)]
        for new in moves:
            got, payload = evaluate(name, new)
            tried.append(new)
            if _better(got, best):
                best = (got, new, payload)
                break
        else:
            return best


def choose_strength(evaluate, names, strengths=STRENGTHS, bounds=STRENGTH_BOUNDS, step: float = STRENGTH_STEP):
    """Section 4.2 probes, the L2 strength chosen on valid: for each candidate name, `evaluate(name, C)` -> (valid
    metric, payload) at every C of `strengths`; then, while its best C is at an edge of the values it tried, the
    next value beyond that edge (C / step or C x step, within `bounds`) is tried and kept only if strictly better,
    so its best C is interior to what it tried unless it is a bound. Returns (valid metric, name, C, payload,
    {name: sorted C tried}) of the best candidate; the first wins ties, NaN never wins."""
    tried, best = {}, None
    for name in names:
        got, c, payload = _search(evaluate, name, strengths, bounds, step, tried.setdefault(name, []))
        if _better(got, best):
            best = (got, name, c, payload)
    return (*best, {k: sorted(v) for k, v in tried.items()})


@single_threaded
def probe_sequences(data: TaskData, candidates: dict, seed: int, strengths=STRENGTHS, bounds=STRENGTH_BOUNDS):
    """Section 4.2 sequence probe: fit a linear probe for each candidate feature set {name: (X_train, X_valid,
    X_test)} and strength, the strength grid extended beyond a winning edge within `bounds` (`choose_strength`);
    the best on the valid split's primary metric; returns (test outputs, {choice, C, valid, tried})."""
    kind, k = data.task.label_kind, data.outputs
    y_tr = np.asarray(data.train.labels)

    def evaluate(name, c):
        x_tr, x_va, _ = candidates[name]
        model = _fit(kind.estimator(c, seed, sp.issparse(x_tr)), x_tr, y_tr)
        return data.primary(kind.read(model, x_va, k)), model

    got, name, c, model, tried = choose_strength(evaluate, list(candidates), strengths, bounds)
    return kind.read(model, candidates[name][2], k), {"choice": name, "C": c, "valid": got, "tried": tried}


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
    """Section 4.2 residue probe (Table 3 SS): a per-residue linear probe for each candidate {name: (train, valid,
    test) lists of per-sequence (n_i, d) feature matrices} at C = `strength`, the best on valid, then C on that
    candidate (`choose_strength` from the single value); returns (test outputs as a list of (n_i, K), {choice, C,
    valid, tried})."""
    kind, k = data.task.label_kind, data.outputs
    labels = data.train.labels
    chain, pos = _residue_sample(labels, seed, limit)
    y = np.array([labels[c][p] for c, p in zip(chain, pos)])

    def predict(model, feats):
        out = kind.read(model, _rows(feats), k)
        return np.split(out, np.cumsum([f.shape[0] for f in feats])[:-1])

    offsets = np.concatenate([[0], np.cumsum([len(lab) for lab in labels])[:-1]])
    rows = offsets[chain] + pos
    fitted = {}

    def evaluate(name, c):
        if (name, c) not in fitted:
            x = _rows(candidates[name][0])[rows]
            model = _fit(kind.estimator(c, seed, sp.issparse(x)), x, y)
            fitted[name, c] = (data.primary(predict(model, candidates[name][1])), model)
        return fitted[name, c]

    layer = None   # the candidate chosen at C = strength, then C on it
    for name in candidates:
        got = evaluate(name, strength)[0]
        if _better(got, layer):
            layer = (got, name)
    got, name, c, model, tried = choose_strength(evaluate, [layer[1]], (strength,))
    return predict(model, candidates[name][2]), {"choice": name, "C": c, "valid": got, "tried": tried}


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


def _matrix(x):
    """A pair feature matrix given as itself or as a function that builds it (one sequence at a time, when read)."""
    x = x() if callable(x) else x
    return x if sp.issparse(x) else np.asarray(x, dtype=np.float32)


@single_threaded
def probe_pairs(task: Task, train: list, test: list, lengths: list, seed: int, strength: float = PAIR_C):
    """Pair probe (Rao et al. 2020): train on drawn pairs of `train` [(i, j, y, X)], score every pair of `test`
    [(i, j, y, X)] (X a matrix, or a function returning it); returns per test sequence an n x n score matrix
    (FILL where a pair does not count)."""
    kind = task.label_kind
    regression = kind.regression
    picks = draw_pairs([(i, j, y) for i, j, y, _ in train], seed, regression)
    x = _rows([_matrix(feats)[p] for (_, _, _, feats), p in zip(train, picks)])
    y = np.concatenate([yy[p] for (_, _, yy, _), p in zip(train, picks)])
    if not regression:
        y = (y > 0).astype(int)
    model = _fit(kind.estimator(strength, seed, sp.issparse(x)), x, y)
    outs = []
    for (i, j, _, feats), n in zip(test, lengths):
        m = np.full((n, n), FILL)
        if len(i):
            s = kind.read(model, _matrix(feats))
            m[i, j] = m[j, i] = s
        outs.append(m)
    return outs


def attention_scale(pairs: list) -> tuple[np.ndarray, np.ndarray]:
    """Section 4.2 pair probe: mean and standard deviation (1 where it is 0) of each attention feature over the
    train pair pool [(i, j, y, X)], which standardise the attention block beside the one-hots."""
    total, square, count = 0.0, 0.0, 0
    for _, _, _, feats in pairs:
        f = np.asarray(feats, dtype=np.float64)
        total, square, count = total + f.sum(0), square + (f**2).sum(0), count + len(f)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(square / max(count, 1) - mean**2, 0.0))
    return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


def with_pair_onehot(pairs: list, tokens: list, modality: str, scale) -> list:
    """Section 4.2 pair probe: [(i, j, y, X)] with X replaced by a function building [the pair baseline's one-hots
    (`pair_onehot`) | the standardised attention features] (sparse), so that the encoder's probe has every feature
    of the baseline's."""
    mean, std = scale

    def build(t, i, j, feats):
        att = (np.asarray(feats, dtype=np.float32) - mean) / std
        return sp.hstack([pair_onehot(t, modality, i, j), sp.csr_matrix(att)], format="csr")

    return [(i, j, y, functools.partial(build, t, i, j, feats)) for (i, j, y, feats), t in zip(pairs, tokens)]


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


def _probe_pairs_task(data: TaskData, feats: dict, seed: int) -> Evaluation:
    scale = attention_scale(feats["train"].pairs)
    train = with_pair_onehot(feats["train"].pairs, data.train.tokens, data.modality, scale)
    test = with_pair_onehot(feats["test"].pairs, data.test.tokens, data.modality, scale)
    outputs = probe_pairs(data.task, train, test, [len(t) - 2 for t in data.test.tokens], seed)
    return data.finish(outputs, data.task.probe)


def _incremental(data: TaskData, feats: dict, seed: int, column: int, layer: int) -> Evaluation:
    """The "+composition" axis of a sequence task: the chosen layer's pooled states beside the composition block
    (k-mer frequencies, j <= BLOCK_K), C chosen on valid; its baseline row is the same block alone."""
    k = BLOCK_K[data.modality]
    block = kmer_candidates(data.splits, data.modality, (k,))[k]
    cands = {k: tuple(np.hstack([feats[s].pooled[:, column], x]) for s, x in zip(SPLITS, block))}
    variant = data.variant(INCREMENTAL)
    outputs, info = probe_sequences(variant, cands, seed)
    return variant.finish(outputs, VARIANTS[INCREMENTAL], {"layer": layer, "k": k, "C": info["C"],
                                                           f"valid {data.task.primary}": info["valid"]})


def _probe_task(data: TaskData, feats: dict, seed: int, layers: list[int], variants=()) -> Evaluation:
    task = data.task
    if task.level == "pair":
        return _probe_pairs_task(data, feats, seed)
    if task.level == "sequence":
        cands = {layer: tuple(feats[s].pooled[:, k] for s in SPLITS) for k, layer in enumerate(layers)}
        outputs, info = probe_sequences(data, cands, seed)
    else:
        cands = {layer: tuple([r[k] for r in feats[s].residues] for s in SPLITS) for k, layer in enumerate(layers)}
        outputs, info = probe_residues(data, cands, seed)
    out = data.finish(outputs, task.probe, {"layer": info["choice"], "C": info["C"],
                                            f"valid {task.primary}": info["valid"]})
    if task.level == "sequence" and INCREMENTAL in task.variants and INCREMENTAL in variants:
        out = Evaluation.concat([out, _incremental(data, feats, seed, layers.index(info["choice"]), info["choice"])])
    return out


def probe_encoder(encoder, modality: str, preset, seed: int = 0, device="cpu", tasks=None,
                  variants=tuple(VARIANTS)) -> Evaluation:
    """Probe a frozen encoder on every available task of a modality (Section 4.2 with the probes of this
    module): features once per labelled set (and per encoder, across seeds), then one probe per task, and the
    incremental probe of the tasks that have it (when "+composition" is among `variants`)."""
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
        parts += [_probe_task(data[t.name], feats, seed, probe_layers(encoder), variants) for t in group]
    return Evaluation.concat(parts)
