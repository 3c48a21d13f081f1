"""The downstream metrics of Section 4.2 / Appendix B, named as in the paper's Tables 1-3 (scikit-learn
and scipy underneath): classification ACC / F1 / AUC / AUPR, base-pair precision / recall / F1 / MCC,
contact top-L/k precision, and regression R2 / SC (Spearman) / MAE / MSE / RMSE.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn import metrics as skm

_OPEN, _CLOSE = "([{<", ")]}>"


def classification(y_true, y_pred) -> dict:
    """Type classification / localisation / SS (Tables 1, 3): ACC and macro F1, in %."""
    return {"ACC": 100 * skm.accuracy_score(y_true, y_pred),
            "F1": 100 * skm.f1_score(y_true, y_pred, average="macro")}


def ranking(y_true, y_score) -> dict:
    """Binary or multi-label scores (Modif, RBP): AUC and AUPR in %, macro-averaged over label columns."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    return {"AUC": 100 * skm.roc_auc_score(y_true, y_score, average="macro"),
            "AUPR": 100 * skm.average_precision_score(y_true, y_score, average="macro")}


def regression(y_true, y_pred) -> dict:
    """CRI-On, distance maps, PPI affinity: R2 and SC (Spearman) in %, MAE, MSE, RMSE."""
    y_true, y_pred = np.ravel(y_true), np.ravel(y_pred)
    mse = skm.mean_squared_error(y_true, y_pred)
    return {"R2": 100 * skm.r2_score(y_true, y_pred), "SC": 100 * spearmanr(y_true, y_pred).statistic,
            "MAE": skm.mean_absolute_error(y_true, y_pred), "MSE": mse, "RMSE": float(np.sqrt(mse))}


def pairs_from_dotbracket(structure: str) -> set[tuple[int, int]]:
    """Base pairs (i < j, 0-based) of a dot-bracket string; (), [], {}, <> pair (pseudoknots included)."""
    stacks = {c: [] for c in _OPEN}
    pairs = set()
    for j, c in enumerate(structure):
        if c in _OPEN:
            stacks[c].append(j)
        elif c in _CLOSE:
            opener = _OPEN[_CLOSE.index(c)]
            if not stacks[opener]:
                raise ValueError(f"unbalanced {c!r} at position {j + 1} of the structure")
            pairs.add((stacks[opener].pop(), j))
    left = [i for s in stacks.values() for i in s]
    if left:
        raise ValueError(f"unbalanced bracket at position {min(left) + 1} of the structure")
    return pairs


def base_pairs(true_pairs, pred_pairs, length: int) -> dict:
    """Secondary structure (Table 2a): precision, recall, F1 and MCC in %, over the L(L-1)/2 possible pairs."""
    true_pairs, pred_pairs = set(map(tuple, true_pairs)), set(map(tuple, pred_pairs))
    tp = len(true_pairs & pred_pairs)
    fp, fn = len(pred_pairs - true_pairs), len(true_pairs - pred_pairs)
    tn = length * (length - 1) // 2 - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    denom = np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / denom if denom else 0.0
    return {"Pre": 100 * precision, "Rec": 100 * recall, "F1": 100 * f1, "MCC": 100 * mcc}


def contact_precision(contacts, scores, fractions=(1.0, 0.5, 0.2, 0.1), min_separation: int = 24) -> dict:
    """Contact maps (Table 2c): precision of the top L*f predicted pairs with |i - j| >= min_separation
    (long range), for each fraction f, in %. `contacts` is the true L x L 0/1 map, `scores` the predicted one."""
    contacts, scores = np.asarray(contacts), np.asarray(scores, dtype=float)
    length = contacts.shape[0]
    i, j = np.triu_indices(length, k=min_separation)
    order = np.argsort(-scores[i, j], kind="stable")
    out = {}
    for f in fractions:
        top = order[: max(1, int(length * f))]
        out[f"L/{round(1 / f)}" if f < 1 else "L"] = 100 * float(contacts[i[top], j[top]].mean())
    return out
