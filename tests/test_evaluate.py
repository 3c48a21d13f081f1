"""corelib.evaluation: the task registry (one primary metric per task), label construction, pair decoding and
every task's metrics checked by hand."""
from __future__ import annotations

import numpy as np
import pytest

from corelib.errors import InputError
from corelib.evaluation import TASKS, Task, TaskData, evaluate_encoder, registry
from corelib.evaluation.kinds import MIN_LOOP, decode_pairs, pair_density
from corelib.evaluation.results import score, score_task


def _task(name):
    return next(t for ts in TASKS.values() for t in ts if t.name == name)


def test_decode_takes_the_best_pairs_each_base_once():
    s = np.full((8, 8), -5.0)
    s[0, 7] = s[7, 0] = 3.0
    s[0, 6] = s[6, 0] = 2.5      # base 0 is taken by (0, 7): skipped
    s[1, 6] = s[6, 1] = 2.0
    s[2, 4] = s[4, 2] = 9.0      # too close (j - i < 4): never a pair
    assert decode_pairs(s, count=2) == {(0, 7), (1, 6)}
    assert decode_pairs(s, count=1) == {(0, 7)}
    assert MIN_LOOP == 4


def test_pair_density_counts_pairs_per_nucleotide():
    a = np.zeros((10, 10)); a[0, 9] = a[9, 0] = 1; a[1, 8] = a[8, 1] = 1
    b = np.full((5, 5), -1.0)
    assert pair_density([a, b]) == 2 / 15


def test_structure_labels_are_cropped_with_the_tokens_and_mask_close_pairs():
    data = TaskData.load(_task("SecStruct"), "rna", max_tokens=42, limits=(20, 5))
    for tok, lab in zip(data.train.tokens, data.train.labels):
        n = len(tok) - 2
        assert lab.shape == (n, n) and np.array_equal(lab, lab.T)
        assert (lab[np.abs(np.subtract.outer(range(n), range(n))) < MIN_LOOP] == -1).all()
        assert ((lab > 0).sum(0) <= 1).all()   # a base pairs with one partner at most
    assert sum(int((lab > 0).sum()) for lab in data.train.labels) > 0


def test_perfect_predictions_score_perfectly():
    truth = np.zeros((40, 40), dtype=np.float32)
    for i, j in [(0, 39), (1, 38), (2, 37), (5, 12)]:
        truth[i, j] = truth[j, i] = 1
    truth[np.abs(np.subtract.outer(range(40), range(40))) < MIN_LOOP] = -1
    res = score_task(Task("SecStruct", "rna_ss", "pairs", "ss_rna", "2a", "F1"), [truth * 10], [truth], density=4 / 40)
    assert res["SecStruct"] == {"Pre": 100.0, "Rec": 100.0, "F1": 100.0, "MCC": 100.0}
    # long range (|i - j| >= 24): 3 true pairs; top-L/10 = 4 candidates, 3 of them true
    assert res["Contact"]["L/10"] == 75.0


def test_classification_and_residue_metrics_by_hand():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 2.0]])
    assert score_task(_task("Bin"), logits, np.array([0, 1, 1, 1])) == {"ACC": 75.0}
    out = [np.array([[1, 0, 0], [0, 1, 0]]), np.array([[0, 0, 1]])]
    assert score_task(_task("SS"), out, [np.array([0, 2]), np.array([2])])["ACC"] == pytest.approx(200 / 3)


def test_distance_and_regression_metrics_by_hand():
    d = np.array([[0, 2, 4], [2, 0, 3], [4, 3, 0]], dtype=np.float32)
    d_masked = d.copy(); d_masked[0, 2] = d_masked[2, 0] = -1      # unknown distance: left out
    res = score_task(_task("DistMap"), [d + 1], [d_masked])
    assert res["MAE"] == 1.0 and res["MSE"] == 1.0                  # pairs (0,1), (1,2) only
    res = score_task(_task("Aff"), np.array([[1.0], [2.0], [4.0]]), np.array([1.0, 3.0, 4.0]))
    assert np.isclose(res["MAE"], 1 / 3) and np.isclose(res["RMSE"], np.sqrt(1 / 3))


def test_every_task_has_one_primary_metric_among_its_scores():
    table = registry()
    assert table["primary"].ne("").all() and not table.duplicated(["modality", "task"]).any()
    prim = dict(zip(table["task"] + "/" + table["modality"], table["primary"]))
    assert prim == {"TypeCls/rna": "ACC", "Modif/rna": "AUC", "CRI-On/rna": "SC", "SecStruct/rna": "F1",
                    "DistMap/rna": "R2", "RBP/rna": "ACC", "Bin/protein": "ACC", "Loc/protein": "ACC",
                    "SS/protein": "ACC", "Contact/protein": "L/5", "Aff/protein": "SC"}
    assert "Contact" not in [t.name for t in TASKS["rna"]]      # same labels as SecStruct: secondary rows only
    assert set(table["probe"]) == {"probe:pooled-linear", "probe:residue-linear", "probe:attention-apc+onehot-pair"}
    sequence = table[table["level"] == "sequence"]   # every sequence task has its incremental probe
    assert sequence["variants"].str.contains(r"\+composition").all()
    assert set(table[table["variants"].str.contains("fine-tuned")]["task"]) == {"TypeCls", "Modif", "CRI-On", "Loc"}
    assert _task("SS").baseline == "composition:onehot-window" and _task("Contact").min_separation == 6


def test_task_data_has_train_valid_test_and_item_ids():
    data = TaskData.load(_task("TypeCls"), "rna", max_tokens=42, limits=(30, 10), seed=1)
    assert [len(data.splits[s].tokens) for s in ("train", "valid", "test")] == [30, 10, 10]
    assert [len(data.splits[s].ids) for s in ("train", "valid", "test")] == [30, 10, 10]
    assert not set(data.test.ids) & (set(data.train.ids) | set(data.valid.ids))
    again = TaskData.load(_task("TypeCls"), "rna", max_tokens=42, limits=(30, 10), seed=1)
    assert [p.ids for p in again.splits.values()] == [p.ids for p in data.splits.values()]


def test_primary_and_secondary_metrics_are_flagged():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 2.0]])
    s = score(_task("RBP"), logits, np.array([0, 1, 1, 1]), ids=["a", "b", "c", "d"])
    assert s.values["RBP"]["ACC"] == 75.0 and set(s.values["RBP"]) == {"ACC", "AUC", "AUPR"}
    assert list(s.items["num"]) == [100.0, 100.0, 0.0, 100.0]


def test_unknown_protocol_is_an_input_error():
    from corelib.config import get_preset
    from corelib.models import build_model

    with pytest.raises(InputError, match="protocol"):
        evaluate_encoder(build_model("rna", "tiny"), "rna", get_preset("smoke"), protocol="finetune")
