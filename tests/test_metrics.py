"""corelib.metrics against values computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from corelib.evaluation import metrics


def test_classification_by_hand():
    out = metrics.classification([0, 0, 1, 1, 2], [0, 1, 1, 1, 2])
    assert out["ACC"] == pytest.approx(80.0)
    # per class F1: class 0: P=1, R=1/2 -> 2/3; class 1: P=2/3, R=1 -> 4/5; class 2: 1
    assert out["F1"] == pytest.approx(100 * (2 / 3 + 4 / 5 + 1) / 3)


def test_ranking_by_hand():
    out = metrics.ranking([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert out["AUC"] == pytest.approx(75.0)                    # 3 of 4 positive/negative pairs ordered
    assert out["AUPR"] == pytest.approx(100 * (1 + 2 / 3) / 2)   # precision at each positive: 1, 2/3


def test_regression_by_hand():
    out = metrics.regression([1, 2, 3, 4], [1, 2, 3, 6])
    assert out["MAE"] == pytest.approx(0.5) and out["MSE"] == pytest.approx(1.0) and out["RMSE"] == 1.0
    assert out["R2"] == pytest.approx(100 * (1 - 4 / 5)) and out["SC"] == pytest.approx(100.0)


def test_dotbracket_with_pseudoknot():
    assert metrics.pairs_from_dotbracket("((..[[..))..]]") == {(0, 9), (1, 8), (4, 13), (5, 12)}
    with pytest.raises(ValueError, match="position 4"):   # the second ")" has no opener
        metrics.pairs_from_dotbracket("(.))")


def test_base_pair_scores_by_hand():
    true = metrics.pairs_from_dotbracket("((....))")   # (0,7), (1,6)
    pred = {(0, 7), (2, 5)}
    out = metrics.base_pairs(true, pred, length=8)
    tp, fp, fn, tn = 1, 1, 1, 28 - 3
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert (out["Pre"], out["Rec"], out["F1"]) == (50.0, 50.0, 50.0) and out["MCC"] == pytest.approx(100 * mcc)


def test_contact_precision_by_hand():
    length = 40
    contacts = np.zeros((length, length), int)
    scores = np.zeros((length, length))
    for k, (i, j) in enumerate([(0, 30), (1, 35), (2, 39), (5, 38)]):
        scores[i, j] = 10 - k                                # ranked first to fourth
    contacts[0, 30] = contacts[2, 39] = 1                    # first and third are true
    scores[3, 4] = 100                                       # short range: never counted
    contacts[3, 4] = 1
    out = metrics.contact_precision(contacts, scores, fractions=(0.1, 0.05))
    assert out["L/10"] == pytest.approx(50.0)                # top 4: 2 true
    assert out["L/20"] == pytest.approx(50.0)                # top 2: 1 true


def test_per_item_auc_and_spearman_by_hand():
    from corelib.evaluation.kinds import auc_items, spearman_items

    # positives 0.35 (one negative below) and 0.8 (two below): AUC = 3 / (2 x 2); item i: 100 n c_i / (P N)
    assert auc_items([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]).tolist() == [0.0, 0.0, 100.0, 200.0]
    # ranks (1, 2, 3) vs (1, 3, 2): z = (-1.2247, 0, 1.2247) and (-1.2247, 1.2247, 0); rho = 1.5 / 3 = 0.5
    assert spearman_items([1, 2, 3], [10, 30, 20]) == pytest.approx([150.0, 0.0, 0.0])
