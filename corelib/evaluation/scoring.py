"""Scoring a task's test predictions (Section 4.2, Tables 1-3): its metrics, named as the paper's table
columns, and for its ONE primary metric a per-item table (num, den) with
primary metric == items.num.sum() / items.den.sum(), so that verdicts can resample test items.

Per-item decompositions of the primary metrics (all in %, higher is better):
- ACC (sequence): num = 100 if the item is right else 0, den = 1.
- ACC (residue, SS3): num = 100 x correct residues of the chain, den = its residues.
- F1 (base pairs, mean per structure) and L/5 (long-range precision, mean per protein): num = the
  item's value, den = 1.
- AUC (macro over labels; Mann-Whitney with ties counted 1/2): positive i of label k contributes
  c_ik / (P_k N_k) (c_ik = negatives scored below it + half the ties); num_i = 100 N / K sum_k of that, den = 1.
- SC (Spearman): with z-scored ranks (population SD), num_i = 100 z(rank y_i) z(rank yhat_i), den = 1.
- R2 (distance maps): with y-bar the mean over all test pairs, num = 100 (SST_i - SSE_i), den = SST_i.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from corelib.errors import InputError
from corelib.evaluation import metrics
from corelib.evaluation.registry import LONG_RANGE, MIN_LOOP, Task

METRIC_COLUMNS = ["task", "metric", "value", "seed", "primary", "protocol"]

ITEM_COLUMNS = ["task", "item", "num", "den", "seed"]


def _empty(columns) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


@dataclass
class Evaluation:
    """Downstream results of one encoder and seed (Section 4.2): long metric rows and, for each task's
    primary metric, per-test-item rows with metric == num.sum() / den.sum() (per task)."""

    metrics: pd.DataFrame = field(default_factory=lambda: _empty(
        {"task": str, "metric": str, "value": float, "seed": int, "primary": bool, "protocol": str}))
    items: pd.DataFrame = field(default_factory=lambda: _empty(
        {"task": str, "item": str, "num": float, "den": float, "seed": int}))

    @classmethod
    def concat(cls, parts) -> Evaluation:
        """Section 4.2: one Evaluation from several (e.g. one per task)."""
        parts = list(parts)
        if not parts:
            return cls()
        return cls(pd.concat([p.metrics for p in parts], ignore_index=True)[METRIC_COLUMNS],
                   pd.concat([p.items for p in parts], ignore_index=True)[ITEM_COLUMNS])

    def primary_metrics(self) -> pd.DataFrame:
        """Section 4.2: the primary metric rows only (one per task)."""
        return self.metrics[self.metrics["primary"]].reset_index(drop=True)

    def item_metrics(self) -> pd.Series:
        """Section 4.2: per task, items.num.sum() / items.den.sum(): equals the primary metric's value."""
        sums = self.items.groupby("task")[["num", "den"]].sum()
        return sums["num"] / sums["den"]


# ----------------------------------------------------------------------------- pair decoding
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


# ----------------------------------------------------------------------------- scoring
@dataclass
class Scored:
    """Section 4.2: a task's metric values by group ({task: {metric: value}}, RNA SecStruct also "Contact") and the
    per-item table (item, num, den) of its primary metric."""

    values: dict
    items: pd.DataFrame


def _ids(ids, n: int) -> list[str]:
    return [str(i) for i in ids] if ids is not None else [str(i) for i in range(n)]


def score(task: Task, outputs, labels, ids=None, density: float = 0.0) -> Scored:
    """Metrics of a task's test predictions, named as the paper's columns (Section 4.2, Tables 1-3), and
    the per-item table of its primary metric. Outputs: (N, K) class scores, (N, K) label scores
    (multilabel), (N,) values (regression), a list of (n_i, K) residue scores, or a list of n_i x n_i pair
    scores; `density` = train base pairs per nucleotide (a structure of n nt gets round(density n) pairs)."""
    kind = task.kind.split(":")[0]
    n = len(labels)
    ids = _ids(ids, n)
    if kind == "class":
        y, pred = np.asarray(labels), np.asarray(outputs).argmax(1)
        m = metrics.classification(y, pred)
        values = {"ACC": m["ACC"], **({"F1": m["F1"]} if "F1" in task.secondary else {})}
        num, den = 100.0 * (pred == y), np.ones(n)
    elif kind == "binary":
        y, out = np.asarray(labels), np.asarray(outputs, dtype=float)
        margin = out[:, 1] - out[:, 0]
        pred = out.argmax(1)
        values = {"ACC": metrics.classification(y, pred)["ACC"], **metrics.ranking(y, margin)}
        num, den = 100.0 * (pred == y), np.ones(n)
    elif kind == "ss3":
        pred = [np.asarray(o).argmax(1) for o in outputs]
        correct = np.array([float((p == np.asarray(lab)).sum()) for p, lab in zip(pred, labels)])
        den = np.array([float(len(lab)) for lab in labels])
        values = {"ACC": 100 * correct.sum() / den.sum()}
        num = 100 * correct
    elif kind == "multilabel":   # mean AUC over the labels present with both classes in the test set
        y, out = np.asarray(labels), np.asarray(outputs, dtype=float)
        both = [k for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
        if both:
            values = {"AUC": metrics.ranking(y[:, both], out[:, both])["AUC"]}
            num, den = auc_items(y[:, both], out[:, both]), np.ones(n)
        else:                        # no label with both classes: AUC undefined
            values, num, den = {"AUC": float("nan")}, np.full(n, np.nan), np.ones(n)
    elif kind == "regression":
        y, out = np.asarray(labels, dtype=float), np.ravel(np.asarray(outputs, dtype=float))
        m = metrics.regression(y, out)
        values = {"SC": m["SC"], **{k: m[k] for k in task.secondary}}
        num, den = spearman_items(y, out), np.ones(n)
    elif kind == "distance":     # over the pairs i < j with a known distance
        keep = [np.triu(np.asarray(lab) >= 0, k=1) for lab in labels]
        ys = [np.asarray(lab)[k] for lab, k in zip(labels, keep)]
        ps = [np.asarray(out)[k] for out, k in zip(outputs, keep)]
        m = metrics.regression(np.concatenate(ys), np.concatenate(ps))
        values = {k: m[k] for k in ("R2", "SC", "MAE", "MSE")}
        ybar = np.concatenate(ys).mean()
        sst = np.array([((yy - ybar) ** 2).sum() for yy in ys])
        sse = np.array([((yy - pp) ** 2).sum() for yy, pp in zip(ys, ps)])
        num, den = 100 * (sst - sse), sst
    elif kind in ("pairs", "contacts"):
        rows = []
        for out, lab in zip(outputs, labels):
            lab, out = np.asarray(lab), np.asarray(out, dtype=float)
            true = (lab > 0).astype(np.int8)
            fractions = (1.0, 0.5, 0.2, 0.1) if kind == "pairs" else (1.0, 0.5, 0.2)
            row = metrics.contact_precision(true, (out + out.T) / 2, fractions, min_separation=LONG_RANGE)
            if kind == "pairs":
                truth = {(int(a), int(b)) for a, b in zip(*np.nonzero(np.triu(true)))}
                row.update(metrics.base_pairs(truth, decode_pairs(out, round(density * len(lab))), len(lab)))
            rows.append(row)
        table = pd.DataFrame(rows)
        mean = table.mean().to_dict()
        if kind == "pairs":   # Table 2a and, from the same scores and labels, Table 2c (secondary)
            values = {"F1": mean["F1"], "Pre": mean["Pre"], "Rec": mean["Rec"], "MCC": mean["MCC"]}
            contact = {k: mean[k] for k in ("L", "L/2", "L/5", "L/10")}
        else:
            values = {k: mean[k] for k in ("L/5", "L", "L/2")}
        num, den = table[task.primary].to_numpy(dtype=float), np.ones(n)
    else:
        raise InputError(f"unknown task kind {task.kind!r}")
    groups = {task.name: values}
    if kind == "pairs":
        groups["Contact"] = contact
    items = pd.DataFrame({"item": ids, "num": np.asarray(num, dtype=float), "den": np.asarray(den, dtype=float)})
    return Scored(groups, items)


def score_task(task: Task, outputs, labels, density: float = 0.0) -> dict:
    """Metrics of one task, named as the paper's table columns (Section 4.2): {metric: value}, or for RNA
    SecStruct {"SecStruct": {...}, "Contact": {...}} (Tables 2a and 2c from the same scores)."""
    values = score(task, outputs, labels, density=density).values
    return values if task.kind == "pairs" else values[task.name]


def evaluation(task: Task, scored: Scored, seed: int, protocol: str, extra: dict | None = None) -> Evaluation:
    """Section 4.2: the Evaluation of one scored task: metric rows (primary = the task's primary metric; `extra` adds
    secondary rows, e.g. the chosen layer) and the primary metric's item rows."""
    rows = [{"task": group, "metric": k, "value": float(v), "seed": seed,
             "primary": group == task.name and k == task.primary, "protocol": protocol}
            for group, values in scored.values.items() for k, v in values.items()]
    rows += [{"task": task.name, "metric": k, "value": float(v), "seed": seed, "primary": False, "protocol": protocol}
             for k, v in (extra or {}).items()]
    items = scored.items.assign(task=task.name, seed=seed)
    return Evaluation(pd.DataFrame(rows, columns=METRIC_COLUMNS).astype({"primary": bool}), items[ITEM_COLUMNS])
