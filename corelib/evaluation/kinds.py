"""Label kinds of the downstream tasks (Section 4.2, Appendix B), one small class each and registered by name as
`corelib.influence.rules` registers layer rules: what one label belongs to (sequence, residue or pair), how labels
are read from a labelled table, which linear probe fits them, how a fitted probe's outputs are read, and how
test outputs become the task's metrics and the per-item table of its primary metric (`results.score`).

Per-item decompositions of the primary metrics (all in %, higher is better), so that primary == num.sum() /
den.sum() and verdicts can resample test items:
- ACC (sequence): num = 100 if the item is right else 0, den = 1.
- ACC (residue, SS3): num = 100 x correct residues of the chain, den = its residues.
- F1 (base pairs, mean per structure) and L/5 (long-range precision, mean per protein): num = the item's value,
  den = 1.
- AUC (macro over labels; Mann-Whitney with ties counted 1/2): positive i of label k contributes
  c_ik / (P_k N_k) (c_ik = negatives scored below it + half the ties); num_i = 100 N / K sum_k of that, den = 1.
- SC (Spearman): with z-scored ranks (population SD), num_i = 100 z(rank y_i) z(rank yhat_i), den = 1.
- R2 (distance maps): with y-bar the mean over all test pairs, num = 100 (SST_i - SSE_i), den = SST_i.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from corelib.data.labelled import ca_coordinates, contact_map
from corelib.errors import InputError
from corelib.evaluation import metrics

MAX_ITER = 1000
PROBE_TOL = 1e-8      # gradient tolerance of the logistic probes' Newton solves (float64)
MIN_LOOP = 4          # a base pair needs j - i >= 4 (a hairpin loop of at least 3 nt)
MIN_CONTACT = 6       # protein contacts are trained and scored on |i - j| >= 6 (Rao et al. 2020)
LONG_RANGE = 24       # long-range contacts: |i - j| >= 24 (Table 2c)
SS3 = "HEC"


# ----------------------------------------------------------------------------- per-item decompositions
def auc_items(y_true, y_score) -> np.ndarray:
    """Per-item share of the macro ROC AUC (Table 1 Modif, in %): sum over items / n == the macro AUC over
    the label columns (Mann-Whitney, ties 1/2); y_true, y_score are (n,) or (n, K)."""
    y, s = np.asarray(y_true), np.asarray(y_score, dtype=float)
    if y.ndim == 1:
        y, s = y[:, None], s[:, None]
    n, k = y.shape
    out = np.zeros(n)
    for col in range(k):
        pos = y[:, col] > 0
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if not n_pos or not n_neg:
            raise InputError(f"label column {col} has one class only: AUC undefined")
        below = rankdata(s[:, col])[pos] - rankdata(s[pos, col])   # negatives below each positive (+ ties / 2)
        out[pos] += below / (n_pos * n_neg)
    return 100 * n * out / k


def spearman_items(y_true, y_pred) -> np.ndarray:
    """Per-item share of Spearman's rho (in %): mean over items == 100 x spearmanr(y_true, y_pred)."""
    r, s = rankdata(np.ravel(y_true)), rankdata(np.ravel(y_pred))
    if r.std() == 0 or s.std() == 0:
        return np.zeros(len(r))
    return 100 * (r - r.mean()) / r.std() * (s - s.mean()) / s.std()


def decode_pairs(scores: np.ndarray, count: int, min_sep: int = MIN_LOOP) -> set[tuple[int, int]]:
    """Base pairs from an n x n score matrix (Table 2a): the best-scoring pairs (j - i >= min_sep), each
    base at most once, until `count` pairs are taken."""
    n = len(scores)
    i, j = np.triu_indices(n, k=min_sep)
    s = (scores[i, j] + scores[j, i]) / 2
    used, pairs = set(), set()
    for k in np.argsort(-s, kind="stable"):
        if len(pairs) >= count:
            break
        a, b = int(i[k]), int(j[k])
        if a not in used and b not in used:
            pairs.add((a, b))
            used.update((a, b))
    return pairs


def pair_density(labels) -> float:
    """Base pairs per nucleotide in a set of pair matrices (how many pairs `decode_pairs` predicts, Table 2a)."""
    return sum(float((np.triu(m) > 0).sum()) for m in labels) / max(1, sum(len(m) for m in labels))


def mask_near(m: np.ndarray, min_sep: int) -> np.ndarray:
    """Tables 2a, 2c, 3: -1 at the pairs closer than `min_sep` along the chain (they do not count)."""
    idx = np.arange(len(m))
    m[np.abs(idx[:, None] - idx[None, :]) < min_sep] = -1
    return m


# ----------------------------------------------------------------------------- the kinds
def as_float64(x):
    """Probe inputs in float64 (features are stored in float32 / float16): the solve is exact to float64."""
    return x.astype(np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)


def _logistic(strength: float, seed: int) -> LogisticRegression:
    return LogisticRegression(C=strength, solver="newton-cholesky", tol=PROBE_TOL, max_iter=MAX_ITER,
                              random_state=seed)


class LabelKind:
    """One kind of label (Section 4.2): its level, reading, probe estimator, probe outputs and metrics."""

    name = ""
    level = "sequence"        # what one label belongs to: sequence, residue or pair
    regression = False        # a value (ridge) rather than classes (logistic)
    min_separation = 1        # pair kinds: smallest |i - j| that counts

    def classes(self, task, table: pd.DataFrame) -> list | None:
        """The class names of a class task (sorted), else None (Section 4.2)."""
        return None

    def labels(self, task, table: pd.DataFrame, classes):
        """The labels of a table's rows: an array (sequence level) or a list of per-residue / n x n arrays."""
        return table["label"].to_numpy()

    def outputs(self, classes) -> int:
        """Outputs a head of this kind has (Appendix B)."""
        return 1

    def estimator(self, strength: float, seed: int, sparse: bool = False):
        """The linear probe (scikit-learn) on standardised features, one-hot features left unscaled (Sec. 4.2). Both
        kinds are solved to the optimum, not to an iterative solver's stopping point (logistic: Newton-Cholesky in
        float64 to a gradient of PROBE_TOL; ridge: a direct solve), so the accuracy is a property of the features:
        an L-BFGS fit stopped at sklearn's tolerance moved with the machine's BLAS kernel."""
        est = Ridge(alpha=1.0 / strength) if self.regression else _logistic(strength, seed)
        return est if sparse else make_pipeline(StandardScaler(), est)

    def read(self, model, x, n_classes: int = 0) -> np.ndarray:
        """A fitted probe's outputs as `score` reads them: class probabilities (every class, also those absent
        from the train rows), label probabilities, decision values (pairs) or predictions (values)."""
        x = as_float64(x)
        if self.regression:
            return np.asarray(model.predict(x), dtype=float)
        prob = model.predict_proba(x)
        out = np.zeros((prob.shape[0], n_classes))
        out[:, model.classes_.astype(int)] = prob
        return out

    def score(self, task, outputs, labels, density: float) -> tuple[dict, np.ndarray, np.ndarray]:
        """({group: {metric: value}}, num, den) of test outputs: the metrics named as the paper's columns and
        the per-item parts of the primary metric (module docstring)."""
        raise NotImplementedError


class ClassKind(LabelKind):
    """One class per sequence from a table column (`class:<column>`, e.g. RNA type, compartment)."""

    name = "class"

    def classes(self, task, table):
        return sorted(table[task.column].unique().tolist())

    def labels(self, task, table, classes):
        return np.array([classes.index(v) for v in table[task.column]])

    def outputs(self, classes):
        return len(classes)

    def score(self, task, outputs, labels, density):
        """ACC (and F1 when secondary), per item 100 x correct."""
        y, pred = np.asarray(labels), np.asarray(outputs).argmax(1)
        m = metrics.classification(y, pred)
        values = {"ACC": m["ACC"], **({"F1": m["F1"]} if "F1" in task.secondary else {})}
        return {task.name: values}, 100.0 * (pred == y), np.ones(len(y))


class BinaryKind(ClassKind):
    """Two classes from a 0/1 `label` column (RBP)."""

    name = "binary"

    def classes(self, task, table):
        return None

    def labels(self, task, table, classes):
        return table["label"].to_numpy()

    def outputs(self, classes):
        return 2

    def score(self, task, outputs, labels, density):
        """ACC, AUC and AUPR of the class-1 margin."""
        y, out = np.asarray(labels), np.asarray(outputs, dtype=float)
        pred = out.argmax(1)
        values = {"ACC": metrics.classification(y, pred)["ACC"], **metrics.ranking(y, out[:, 1] - out[:, 0])}
        return {task.name: values}, 100.0 * (pred == y), np.ones(len(y))


class MultiLabelKind(LabelKind):
    """Several 0/1 labels per sequence (RNA modifications, 12 labels): one-vs-rest logistic probes."""

    name = "multilabel"

    def labels(self, task, table, classes):
        return np.stack(table["labels"].to_list())

    def outputs(self, classes):
        return 12

    def estimator(self, strength, seed, sparse=False):
        est = OneVsRestClassifier(_logistic(strength, seed))
        return est if sparse else make_pipeline(StandardScaler(), est)

    def read(self, model, x, n_classes=0):
        return model.predict_proba(as_float64(x))

    def score(self, task, outputs, labels, density):
        """Macro AUC over the labels present with both classes in the test set (NaN when none is)."""
        y, out = np.asarray(labels), np.asarray(outputs, dtype=float)
        both = [k for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
        if not both:
            return {task.name: {"AUC": float("nan")}}, np.full(len(y), np.nan), np.ones(len(y))
        values = {"AUC": metrics.ranking(y[:, both], out[:, both])["AUC"]}
        return {task.name: values}, auc_items(y[:, both], out[:, both]), np.ones(len(y))


class RegressionKind(LabelKind):
    """One value per sequence (CRISPR on-target, PPI affinity): ridge probes, Spearman's rho."""

    name = "regression"
    regression = True

    def score(self, task, outputs, labels, density):
        """SC and the secondary error metrics, per item the Spearman share."""
        y, out = np.asarray(labels, dtype=float), np.ravel(np.asarray(outputs, dtype=float))
        m = metrics.regression(y, out)
        return {task.name: {"SC": m["SC"], **{k: m[k] for k in task.secondary}}}, spearman_items(y, out), np.ones(len(y))


class Residue3Kind(LabelKind):
    """Three-state secondary structure per residue (protein SS, DSSP H/E/C)."""

    name = "ss3"
    level = "residue"

    def labels(self, task, table, classes):
        return [np.array([SS3.index(c) for c in s]) for s in table["ss3"]]

    def outputs(self, classes):
        return 3

    def score(self, task, outputs, labels, density):
        """Residue accuracy, per chain its correct residues over its residues."""
        pred = [np.asarray(o).argmax(1) for o in outputs]
        correct = np.array([float((p == np.asarray(lab)).sum()) for p, lab in zip(pred, labels)])
        den = np.array([float(len(lab)) for lab in labels])
        return {task.name: {"ACC": 100 * correct.sum() / den.sum()}}, 100 * correct, den


class PairKind(LabelKind):
    """A score per residue pair: logistic probes on the pairs that count, decision values read."""

    level = "pair"

    def read(self, model, x, n_classes=0):
        return np.asarray(model.decision_function(as_float64(x)), dtype=float)

    def precision(self, lab, out, fractions) -> dict:
        """Top-L/k precision of long-range contacts (Table 2c) of one item."""
        true = (np.asarray(lab) > 0).astype(np.int8)
        return metrics.contact_precision(true, (out + out.T) / 2, fractions, min_separation=LONG_RANGE)


class BasePairKind(PairKind):
    """RNA base pairs from a dot-bracket structure (Table 2a; its top-L precisions are Table 2c's Contact)."""

    name = "pairs"
    min_separation = MIN_LOOP

    def labels(self, task, table, classes):
        out = []
        for seq, structure in zip(table["seq"], table["structure"]):
            m = np.zeros((len(seq), len(seq)), dtype=np.float32)
            for i, j in metrics.pairs_from_dotbracket(structure):
                m[i, j] = m[j, i] = 1
            out.append(mask_near(m, self.min_separation))
        return out

    def score(self, task, outputs, labels, density):
        """F1 / Pre / Rec / MCC of decoded pairs (density x length of them), and the Contact group's
        top-L precisions from the same scores; per item its F1."""
        rows = []
        for out, lab in zip(outputs, labels):
            out = np.asarray(out, dtype=float)
            row = self.precision(lab, out, (1.0, 0.5, 0.2, 0.1))
            truth = {(int(a), int(b)) for a, b in zip(*np.nonzero(np.triu(np.asarray(lab) > 0)))}
            row.update(metrics.base_pairs(truth, decode_pairs(out, round(density * len(lab))), len(lab)))
            rows.append(row)
        table = pd.DataFrame(rows)
        mean = table.mean().to_dict()
        groups = {task.name: {k: mean[k] for k in ("F1", "Pre", "Rec", "MCC")},
                  "Contact": {k: mean[k] for k in ("L", "L/2", "L/5", "L/10")}}
        return groups, table[task.primary].to_numpy(dtype=float), np.ones(len(rows))


class ContactKind(PairKind):
    """Protein residue contacts (C-alpha within 8 A) from the structures (Table 3 Contact)."""

    name = "contacts"
    min_separation = MIN_CONTACT

    def labels(self, task, table, classes):
        return [mask_near(contact_map(ca_coordinates(c)).astype(np.float32), self.min_separation) for c in table["ca"]]

    def score(self, task, outputs, labels, density):
        """Top-L, L/2, L/5 precision of long-range contacts; per item its primary precision."""
        rows = [self.precision(lab, np.asarray(out, dtype=float), (1.0, 0.5, 0.2)) for out, lab in zip(outputs, labels)]
        table = pd.DataFrame(rows)
        mean = table.mean().to_dict()
        return ({task.name: {k: mean[k] for k in ("L/5", "L", "L/2")}}, table[task.primary].to_numpy(dtype=float),
                np.ones(len(rows)))


class DistanceKind(PairKind):
    """Pairwise distances (RNA distance maps): ridge probes on the pairs with a known distance."""

    name = "distance"
    regression = True

    def labels(self, task, table, classes):
        return [np.nan_to_num(d, nan=-1.0) for d in table["distances"]]

    def read(self, model, x, n_classes=0):
        return np.asarray(model.predict(as_float64(x)), dtype=float)

    def score(self, task, outputs, labels, density):
        """R2 (and SC, MAE, MSE) over the pairs i < j with a known distance; per item 100 (SST - SSE), SST."""
        keep = [np.triu(np.asarray(lab) >= 0, k=1) for lab in labels]
        ys = [np.asarray(lab)[k] for lab, k in zip(labels, keep)]
        ps = [np.asarray(out)[k] for out, k in zip(outputs, keep)]
        m = metrics.regression(np.concatenate(ys), np.concatenate(ps))
        ybar = np.concatenate(ys).mean()
        sst = np.array([((yy - ybar) ** 2).sum() for yy in ys])
        sse = np.array([((yy - pp) ** 2).sum() for yy, pp in zip(ys, ps)])
        return {task.name: {k: m[k] for k in ("R2", "SC", "MAE", "MSE")}}, 100 * (sst - sse), sst


KINDS: dict[str, LabelKind] = {k.name: k for k in (ClassKind(), BinaryKind(), MultiLabelKind(), RegressionKind(),
                                                    Residue3Kind(), BasePairKind(), ContactKind(), DistanceKind())}


def get_kind(name: str) -> LabelKind:
    """The registered label kind of a task's `kind` ("class:<column>" names the class column) (Section 4.2)."""
    key = name.split(":")[0]
    if key not in KINDS:
        raise InputError(f"unknown task kind {name!r}; known: {', '.join(KINDS)}")
    return KINDS[key]
