"""corelib.evaluation probes, baselines and intrinsic loss: APC by hand, the layer chosen on the valid split,
per-item tables that reproduce the metrics, a k-mer baseline that learns k-mer presence and nothing else,
fixed-mask MLM loss (the comparison axes and the pair probe against its baseline: test_downstream_axes.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from sklearn import metrics as skm

from corelib.config import get_preset
from corelib.data import get_vocab, mlm_mask, tokenize
from corelib.evaluation import TASKS, Evaluation, Task, TaskData, evaluate_encoder
from corelib.evaluation.composition import kmer_features, pair_onehot, window_features
from corelib.evaluation.features import apc_at, forward_features, symmetric_apc
from corelib.evaluation.intrinsic import family_losses, heldout_mlm_loss, masked_entropy, masked_residues
from corelib.evaluation.probes import probe_sequences
from corelib.evaluation.results import score
from corelib.evaluation.task_data import Split
from corelib.models import build_model, per_sequence_loss

SYN = Task("Syn", "none", "class:label", "typecls", "-", "ACC")


def _syn(labels: dict) -> TaskData:
    """A synthetic two-class task's splits: labels only (the probes read features given beside them)."""
    return TaskData(SYN, "rna", 0, [0, 1], {s: Split(None, y, [f"{s}{i}" for i in range(len(y))])
                                            for s, y in labels.items()})


def _task(name):
    return next(t for ts in TASKS.values() for t in ts if t.name == name)


# ----------------------------------------------------------------------------- APC
def test_apc_by_hand():
    a = np.array([[0.0, 1.0, 2.0],
                  [3.0, 0.0, 1.0],
                  [0.0, 2.0, 0.0]])
    # F = A + A^T = [[0, 4, 2], [4, 0, 3], [2, 3, 0]]; row (= column) sums 6, 7, 5; total 18
    f = [[0, 4, 2], [4, 0, 3], [2, 3, 0]]
    rows, total = [6, 7, 5], 18
    expect = np.array([[f[i][j] - rows[i] * rows[j] / total for j in range(3)] for i in range(3)])
    assert expect[0, 1] == pytest.approx(4 - 6 * 7 / 18)           # 1.6667
    assert expect[0, 0] == pytest.approx(0 - 6 * 6 / 18)           # -2
    got = symmetric_apc(a)
    assert np.allclose(got, expect) and np.allclose(got, got.T)
    # the same per map of a stack, and apc_at reads it at index pairs without building the maps
    stack = np.stack([a, 2 * a.T])
    assert np.allclose(symmetric_apc(stack)[0], expect)
    assert np.allclose(symmetric_apc(stack)[1], 2 * expect)        # scale-equivariant; A^T gives the same F
    i, j = np.array([0, 0, 1]), np.array([1, 2, 2])
    assert np.allclose(apc_at(stack, i, j), symmetric_apc(stack)[:, i, j], atol=1e-6)


def test_attention_features_are_the_apc_of_each_layers_heads():
    enc = build_model("rna", "tiny", seed=0)
    toks = tokenize(["ACGUAGCUAGCUAGGCAU", "GGGACCCAUU"], "rna", 64)
    got = dict((k, (s, a)) for k, s, a in forward_features(enc, toks, attention=True))
    x = torch.from_numpy(toks[1].astype(np.int64))[None]
    with torch.no_grad():
        out = enc.net(x, repr_layers=[1, 2], need_head_weights=True)
    n = len(toks[1]) - 2
    maps = out["attentions"][0, :, :, 1 : n + 1, 1 : n + 1].reshape(-1, n, n)   # (layers x heads, n, n)
    states, attn = got[1]
    assert attn.shape == (2 * 4, n, n) and states.shape == (2, n, 64)
    assert np.allclose(attn, maps.numpy(), atol=1e-5)      # padding in the batch changes nothing
    assert np.allclose(states[-1], out["representations"][2][0, 1 : n + 1].numpy(), atol=1e-5)


# ----------------------------------------------------------------------------- layer choice on valid
def test_layer_is_chosen_on_the_valid_split():
    """Layer 1 separates the classes on the train rows only (noise on valid and test); layer 2 carries a
    weaker signal on every split. A choice by train fit would take layer 1; the valid split takes layer 2."""
    rng = np.random.default_rng(0)
    y = {s: rng.integers(0, 2, n) for s, n in (("train", 200), ("valid", 120), ("test", 120))}
    leak = {s: (y[s][:, None] * 4.0 if s == "train" else 0) + rng.normal(size=(len(y[s]), 8)) for s in y}
    weak = {s: y[s][:, None] * 1.0 + rng.normal(size=(len(y[s]), 8)) for s in y}
    data = _syn(y)
    cands = {1: (leak["train"], leak["valid"], leak["test"]), 2: (weak["train"], weak["valid"], weak["test"])}
    outputs, info = probe_sequences(data, cands, seed=0)
    assert info["choice"] == 2
    assert skm.accuracy_score(y["test"], outputs.argmax(1)) > 0.75
    only_leak, info1 = probe_sequences(data, {1: cands[1]}, seed=0)
    assert info1["valid"] < 65 and skm.accuracy_score(y["test"], only_leak.argmax(1)) < 0.65


# ----------------------------------------------------------------------------- items reproduce the metrics
def test_items_reproduce_each_primary_metric():
    rng = np.random.default_rng(1)
    # classification ACC
    y, logits = rng.integers(0, 3, 50), rng.normal(size=(50, 3))
    s = score(_task("Loc"), logits, y, ids=[f"p{i}" for i in range(50)])
    assert s.items["num"].sum() / s.items["den"].sum() == pytest.approx(100 * skm.accuracy_score(y, logits.argmax(1)))
    assert s.values["Loc"]["ACC"] == pytest.approx(100 * skm.accuracy_score(y, logits.argmax(1)))
    assert list(s.items["item"][:2]) == ["p0", "p1"]
    # residue ACC: per chain correct residues / residues
    labels = [rng.integers(0, 3, n) for n in (5, 9, 2)]
    outs = [rng.normal(size=(len(lab), 3)) for lab in labels]
    s = score(_task("SS"), outs, labels)
    flat = skm.accuracy_score(np.concatenate(labels), np.concatenate([o.argmax(1) for o in outs]))
    assert s.items["num"].sum() / s.items["den"].sum() == pytest.approx(100 * flat)
    assert list(s.items["den"]) == [5, 9, 2]
    # macro AUC over labels, ties included
    y = rng.integers(0, 2, (40, 3))
    sc = np.round(rng.normal(size=(40, 3)), 1)
    s = score(_task("Modif"), sc, y)
    assert s.items["num"].sum() / s.items["den"].sum() == pytest.approx(100 * skm.roc_auc_score(y, sc, average="macro"))
    # Spearman, ties included
    y, pred = np.round(rng.normal(size=30), 1), np.round(rng.normal(size=30), 1)
    s = score(_task("CRI-On"), pred, y)
    assert s.items["num"].sum() / s.items["den"].sum() == pytest.approx(100 * spearmanr(y, pred).statistic)
    # distance-map R2 over the known pairs of all maps
    maps = [np.abs(rng.normal(size=(n, n))) for n in (6, 4)]
    maps = [(m + m.T) for m in maps]
    maps[0][0, 3] = maps[0][3, 0] = -1
    preds = [m + rng.normal(size=m.shape) for m in maps]
    s = score(_task("DistMap"), preds, maps)
    keep = [np.triu(m >= 0, 1) for m in maps]
    r2 = skm.r2_score(np.concatenate([m[k] for m, k in zip(maps, keep)]), np.concatenate([p[k] for p, k in zip(preds, keep)]))
    assert s.items["num"].sum() / s.items["den"].sum() == pytest.approx(100 * r2)


def test_base_pair_f1_items_are_per_structure():
    truth = np.zeros((30, 30), dtype=np.float32)
    for i, j in [(0, 29), (1, 28), (2, 27), (10, 20)]:
        truth[i, j] = truth[j, i] = 1
    truth[np.abs(np.subtract.outer(range(30), range(30))) < 4] = -1
    other = truth.copy()
    scores = [truth * 10, -truth * 10]   # perfect, then the true pairs ranked last
    s = score(_task("SecStruct"), scores, [truth, other], density=4 / 30)
    assert list(s.items["num"]) == [100.0, 0.0] and s.values["SecStruct"]["F1"] == 50.0
    assert set(s.values) == {"SecStruct", "Contact"}


def test_evaluation_tables_follow_the_interface():
    preset = get_preset("smoke", {"downstream.train": 60, "downstream.test": 30, "data.max_tokens": 66})
    ev = evaluate_encoder(build_model("rna", "tiny", seed=0), "rna", preset, seed=3)
    assert isinstance(ev, Evaluation)
    assert list(ev.metrics.columns) == ["task", "metric", "value", "seed", "primary", "protocol"]
    assert list(ev.items.columns) == ["task", "item", "num", "den", "seed"]
    prim = ev.primary_metrics().set_index("task")
    assert sorted(prim.index) == ["SecStruct", "TypeCls", "TypeCls (+composition)", "TypeCls (fine-tuned)"]
    assert prim.loc["TypeCls", "metric"] == "ACC" and prim.loc["SecStruct", "metric"] == "F1"
    assert not ev.metrics.query("task == 'Contact'")["primary"].any()           # RNA contact: secondary
    assert set(ev.metrics["seed"]) == set(ev.items["seed"]) == {3}
    assert pd.api.types.is_bool_dtype(ev.metrics["primary"])
    got = ev.item_metrics()
    for task, row in prim.iterrows():
        assert got[task] == pytest.approx(row["value"])
    assert ev.items.groupby("task").size()["TypeCls"] == 30 and not ev.items.duplicated(["task", "item"]).any()
    layer = ev.metrics.query("task == 'TypeCls' and metric == 'layer'")["value"].item()
    assert layer in (1, 2)


# ----------------------------------------------------------------------------- composition baselines
def test_kmer_baseline_learns_kmer_presence_and_nothing_else():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGU"), 40)) for _ in range(600)]
    toks = tokenize(seqs, "rna", 64)
    presence = np.array([int("GAU" in s) for s in seqs])
    coin = rng.integers(0, 2, len(seqs))
    cands = {k: (kmer_features(toks[:360], "rna", k), kmer_features(toks[360:480], "rna", k),
                 kmer_features(toks[480:], "rna", k)) for k in (1, 2, 3, 4)}
    for labels, lo, hi in ((presence, 0.9, 1.0), (coin, 0.35, 0.65)):
        data = _syn({"train": labels[:360], "valid": labels[360:480], "test": labels[480:]})
        outputs, info = probe_sequences(data, cands, seed=0)
        assert lo <= skm.accuracy_score(labels[480:], outputs.argmax(1)) <= hi
        if labels is presence:
            assert info["choice"] >= 3


def test_composition_features_by_hand():
    t = tokenize(["ACGA"], "rna", 10)[0]
    f = kmer_features([t], "rna", 2)[0]
    assert f.shape == (4 + 16,) and f[:4].sum() == pytest.approx(1) and f[4:].sum() == pytest.approx(1)
    a, c, g = (get_vocab("rna").standard_ids.tolist().index(get_vocab("rna").index[x]) for x in "ACG")
    assert f[a] == pytest.approx(0.5) and f[4 + a * 4 + c] == pytest.approx(1 / 3)   # AC is one of 3 2-mers
    w = window_features(t, "rna", width=1).toarray()
    assert w.shape == (4, 3 * 6) and (w.sum(1) == 3).all()
    assert w[0, 0 * 6 + 5] == 1 and w[0, 1 * 6 + a] == 1 and w[0, 2 * 6 + c] == 1   # outside, A, C
    p = pair_onehot(t, "rna", np.array([0]), np.array([3])).toarray()[0]
    assert p.sum() == 2 and p[a * 5 + a] == 1 and p[25 + 3] == 1                   # (A, A); |i - j| = 3 -> bin 3


# ----------------------------------------------------------------------------- intrinsic
def test_heldout_mlm_loss_feeds_mask_at_fixed_positions_per_sequence_and_family():
    seqs = ["ACGUAGCUAGCUAGCAUCGAUCGA", "GGGGCCCCAAAAUUUU", "ACGUAGCUAGCAUGCAUGCAUCGAUCGAUGCAUGCAUGCA"]
    toks, vocab = tokenize(seqs, "rna", 130), get_vocab("rna")
    enc = build_model("rna", "tiny", seed=0)
    tab = heldout_mlm_loss(enc, toks, ["a", "b", "a"], vocab, mask_seed=5, mask_prob=0.15, batch_size=2)
    assert list(tab.columns) == ["item", "family", "num", "den"] and list(tab["item"]) == ["0", "1", "2"]
    again = heldout_mlm_loss(enc, toks, ["a", "b", "a"], vocab, mask_seed=5, mask_prob=0.15)
    assert np.allclose(tab["num"], again["num"], atol=1e-5)                       # same masks, any batching
    for k, t in enumerate(toks):
        inputs, labels = mlm_mask(t.astype(np.int64), k, 5, vocab, 0.15, mask_only=True)
        assert tab["den"][k] == (labels != -100).sum() == round(0.15 * len(seqs[k]))
        assert (inputs[labels != -100] == vocab.mask).all()            # nothing visible to copy
        with torch.no_grad():
            ref = per_sequence_loss(enc(torch.from_numpy(inputs)[None]), torch.from_numpy(labels)[None]).item()
        assert tab["num"][k] / tab["den"][k] == pytest.approx(ref, rel=1e-4)
    fam = family_losses(tab)
    assert fam["a"] == pytest.approx((tab["num"][0] + tab["num"][2]) / (tab["den"][0] + tab["den"][2]))
    counts = masked_residues(toks, ["a", "b", "a"], vocab, mask_seed=5, mask_prob=0.15)
    picked = np.concatenate([t[mlm_mask(t.astype(np.int64), k, 5, vocab, 0.15)[1] != -100] for k, t in enumerate(toks)])
    freq = np.unique(picked, return_counts=True)[1] / picked.size
    assert masked_entropy(counts)["all"] == pytest.approx(-(freq * np.log(freq)).sum())   # of the masked residues
    assert abs(fam.mean() - np.log(len(vocab))) < 1.0   # an untrained model sits near ln(vocabulary)


def test_probe_layers_offer_every_layer_of_small_models_and_twelve_of_deep_ones():
    from types import SimpleNamespace

    from corelib.evaluation.features import probe_layers

    assert probe_layers(SimpleNamespace(n_layers=4)) == [1, 2, 3, 4]
    deep = probe_layers(SimpleNamespace(n_layers=33))
    assert len(deep) == 12 and deep[0] == 1 and deep[-1] == 33
