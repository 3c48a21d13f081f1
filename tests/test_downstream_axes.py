"""The downstream comparison axes of issue 22 (item 6): the L2 strength chosen from a grid extended past a winning
edge, the incremental probe (encoder + composition against composition alone), the pair probe that holds the
pair baseline's features, and the fine-tuned axis (Appendix B's protocol) as its own task in the rows that the
grid and the claims read (primary metric == items.num.sum() / items.den.sum())."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from corelib.config import get_preset
from corelib.data import tokenize
from corelib.evaluation import Task, TaskData, evaluate_baselines, evaluate_encoder
from corelib.evaluation.composition import BLOCK_K, kmer_candidates, pair_onehot
from corelib.evaluation.features import pair_pool, probe_layers, split_features, upper_pairs
from corelib.evaluation.probes import (
    STRENGTH_BOUNDS,
    STRENGTHS,
    _incremental,
    _probe_pairs_task,
    _probe_task,
    choose_strength,
    probe_pairs,
    probe_sequences,
)
from corelib.evaluation.registry import FINETUNED, INCREMENTAL, TASKS
from corelib.evaluation.task_data import SPLITS, Split
from corelib.evaluation.tasks import finetune_task
from corelib.models import build_model

SYN = Task("Syn", "none", "class:label", "typecls", "-", "ACC", (), (FINETUNED, INCREMENTAL))


def _syn(tokens: dict, labels: dict) -> TaskData:
    """A two-class task on given token arrays and labels per split."""
    return TaskData(SYN, "rna", 0, [0, 1], {s: Split(tokens.get(s), y, [f"{s}{i}" for i in range(len(y))])
                                            for s, y in labels.items()})


def _paired_noise(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Difference of two classifiers' accuracies (in points) on the same items, and its standard error from the
    discordant items (McNemar): sqrt(b + c) / n."""
    return 100 * (a.mean() - b.mean()), 100 * np.sqrt((a != b).sum()) / len(a)


# ----------------------------------------------------------------------------- the strength grid
@pytest.mark.parametrize("peak, chosen, lowest, highest", [
    (-3.4, 1e-3, 1e-4, 1.0),     # best below the first grid: extended down until the next value is worse
    (1.6, 100.0, 0.01, 1e3),     # best above it: extended up
    (-1.2, 0.1, 0.01, 1.0),      # interior already: nothing added
    (9.0, 1e3, 0.01, 1e3),       # still rising at the bound: stops there
    (-9.0, 1e-5, 1e-5, 1.0),
])
def test_strength_grid_is_extended_past_a_winning_edge(peak, chosen, lowest, highest):
    """A valid metric -(log10 C - peak)^2 has its best grid value where the hand-computed argmax says."""
    got, name, c, _, tried = choose_strength(lambda n, c: (-(np.log10(c) - peak) ** 2, None), ["x"])
    assert c == pytest.approx(chosen) and name == "x"
    assert min(tried["x"]) == pytest.approx(lowest) and max(tried["x"]) == pytest.approx(highest)
    assert got == pytest.approx(-(np.log10(chosen) - peak) ** 2)
    inside = min(tried["x"]) < c < max(tried["x"])
    assert inside or c in STRENGTH_BOUNDS


def test_strength_grid_ties_keep_the_first_and_every_candidate_gets_its_own_extension():
    assert choose_strength(lambda n, c: (50.0, None), ["a", "b"])[1:3] == ("a", STRENGTHS[0])   # ties stay
    _, _, c, _, tried = choose_strength(lambda n, c: (50.0, None), ["a"])
    assert tried["a"] == [0.001, *STRENGTHS]                          # one step past the edge, not better: stop
    curves = {"a": lambda c: -abs(np.log10(c) + 4), "b": lambda c: -abs(np.log10(c)) - 0.5}
    _, name, c, _, tried = choose_strength(lambda n, c: (curves[n](c), None), ["a", "b"])
    assert (name, c) == ("a", pytest.approx(1e-4)) and tried["b"] == [*STRENGTHS, 10.0]
    _, _, c, _, _ = choose_strength(lambda n, c: (np.nan if c < 1 else 1.0, None), ["a"])
    assert c == 1.0                                                    # NaN never wins


def test_kmer_probe_choice_is_interior_where_the_old_grid_chose_its_edge():
    """Few rows, many k-mer columns and a weak composition signal: the old grid (0.01 .. 1) picks its edge 0.01,
    the extended grid a smaller C that is interior to what it tried, and valid is at least as good."""
    rng = np.random.default_rng(3)
    n = {"train": 60, "valid": 200, "test": 200}
    seqs = {s: ["".join(rng.choice(list("ACGU"), 40, p=[0.25, 0.25, 0.25, 0.25])) for _ in range(k)]
            for s, k in n.items()}
    labels = {s: np.array([int(q.count("G") + rng.normal(0, 2) > 10) for q in seqs[s]]) for s in seqs}
    data = _syn({s: tokenize(q, "rna", 64) for s, q in seqs.items()}, labels)
    cands = {4: kmer_candidates(data.splits, "rna")[4]}
    _, old = probe_sequences(data, cands, seed=0, bounds=(min(STRENGTHS), max(STRENGTHS)))
    _, new = probe_sequences(data, cands, seed=0)
    assert old["C"] == min(STRENGTHS)
    assert new["C"] < min(STRENGTHS) and min(new["tried"][4]) < new["C"] and new["valid"] >= old["valid"]


# ----------------------------------------------------------------------------- the incremental probe
def _incremental_case(context: bool):
    """Random RNA; labels from a noisy count of a 2-mer (composition alone: about 75% reachable) or, with
    `context`, a coin that only the encoder's (planted) features carry; encoder features: noise, plus the coin
    when `context`."""
    rng = np.random.default_rng(7)
    n = {"train": 240, "valid": 120, "test": 240}
    seqs = {s: ["".join(rng.choice(list("ACGU"), 40)) for _ in range(k)] for s, k in n.items()}
    if context:
        labels = {s: rng.integers(0, 2, k) for s, k in n.items()}
    else:
        labels = {s: np.array([int(q.count("GA") + rng.normal(0, 1) > 2.5) for q in seqs[s]]) for s in seqs}
    data = _syn({s: tokenize(q, "rna", 64) for s, q in seqs.items()}, labels)
    pooled = {s: rng.normal(size=(k, 1, 16)) for s, k in n.items()}
    if context:
        for s in pooled:
            pooled[s][:, 0, 0] += 1.5 * (2 * labels[s] - 1)
    feats = {s: SimpleNamespace(pooled=pooled[s]) for s in SPLITS}
    return data, feats, labels["test"]


@pytest.mark.parametrize("context", [False, True])
def test_incremental_probe_gains_only_what_the_encoder_adds(context):
    data, feats, y = _incremental_case(context)
    both = _incremental(data, feats, seed=0, column=0, layer=1)
    block = kmer_candidates(data.splits, "rna", (BLOCK_K["rna"],))             # the same composition block alone
    alone, _ = probe_sequences(data, block, seed=0)
    task = SYN.variant(INCREMENTAL).name
    prim = both.primary_metrics().set_index("task")
    assert list(prim.index) == [task] and both.item_metrics()[task] == pytest.approx(prim.loc[task, "value"])
    items = both.items.set_index("item")["num"].reindex(data.test.ids).to_numpy() > 0
    diff, se = _paired_noise(items, alone.argmax(1) == y)
    if context:
        assert diff > 3 * se and diff > 20, (diff, se)     # the planted signal: far beyond the paired noise
    else:
        assert abs(diff) <= 3 * se, (diff, se)              # composition labels: nothing gained beyond noise


# ----------------------------------------------------------------------------- the pair probe
def _pair_inputs(data: TaskData, width: int):
    """Per split the pairs the encoder's probe reads [(i, j, y, features)], with constant attention features."""
    out = {}
    for split in ("train", "test"):
        rows = []
        for k, lab in enumerate(data.splits[split].labels):
            lab = np.asarray(lab)
            i, j, y = pair_pool(lab, k) if split == "train" else (*upper_pairs(lab), None)
            rows.append((i, j, lab[i, j] if y is None else y, np.full((len(i), width), 0.3, dtype=np.float32)))
        out[split] = SimpleNamespace(pairs=rows)
    return out


def test_pair_probe_holds_the_baseline_features_so_constant_attention_reproduces_the_baseline():
    """The encoder's pair probe = the pair baseline's one-hots + standardised attention; attention that carries
    nothing (constant) leaves the baseline's scores."""
    task = next(t for t in TASKS["rna"] if t.name == "SecStruct")
    data = TaskData.load(task, "rna", 66, (24, 12), seed=0)
    feats = _pair_inputs(data, 8)
    enc = _probe_pairs_task(data, feats, seed=0)
    base = probe_pairs(task, [(i, j, y, pair_onehot(t, "rna", i, j)) for (i, j, y, _), t in
                              zip(feats["train"].pairs, data.train.tokens)],
                       [(i, j, y, pair_onehot(t, "rna", i, j)) for (i, j, y, _), t in
                        zip(feats["test"].pairs, data.test.tokens)], [len(t) - 2 for t in data.test.tokens], seed=0)
    ref = data.finish(base, task.baseline)
    assert enc.metrics["protocol"].eq(task.probe).all() and "onehot-pair" in task.probe
    assert np.allclose(enc.items["num"], ref.items["num"], atol=1e-6)


def test_pair_probe_with_separation_is_at_least_as_good_as_the_separation_baseline_on_rna_ss():
    """Real rna_ss, an untrained encoder: its attention adds little, but the probe has the baseline's identity
    and separation features, so its F1 is not below the baseline's beyond the paired item noise."""
    preset = get_preset("smoke", {"downstream.train": 48, "downstream.test": 40, "data.max_tokens": 98})
    enc = evaluate_encoder(build_model("rna", "tiny", seed=0), "rna", preset, seed=0, tasks={"SecStruct"})
    base = evaluate_baselines("rna", preset, seed=0, tasks={"SecStruct"})
    a = enc.items.set_index("item")["num"]
    b = base.items.set_index("item")["num"].reindex(a.index)
    diff = (a - b).to_numpy()
    assert diff.mean() >= -2 * diff.std(ddof=1) / np.sqrt(len(diff)), (a.mean(), b.mean())


# ----------------------------------------------------------------------------- the fine-tuned axis
def test_fine_tuned_axis_learns_a_planted_signal_that_the_frozen_random_encoders_probe_cannot():
    """The label is the first of 60 random nucleotides (A or C against G or U): the mean-pooled states of a frozen
    random encoder hold it too diluted for the linear probe (near chance), while fine-tuning the encoder with the
    task's head (Appendix B.1, `finetune_task`) learns to read that position."""
    rng = np.random.default_rng(0)
    n = {"train": 100, "valid": 100, "test": 200}
    seqs = {s: ["".join(rng.choice(list("ACGU"), 60)) for _ in range(k)] for s, k in n.items()}
    labels = {s: np.array([int(q[0] in "AC") for q in seqs[s]]) for s in seqs}
    data = _syn({s: tokenize(q, "rna", 64) for s, q in seqs.items()}, labels)
    encoder = build_model("rna", "tiny", seed=0)
    feats = {s: split_features(encoder, data.splits[s].tokens) for s in SPLITS}
    frozen = _probe_task(data, feats, seed=0, layers=probe_layers(encoder), variants=())
    preset = get_preset("smoke", {"downstream.finetune_epochs": 12, "downstream.finetune_lr": 3e-3,
                                  "downstream.finetune_batch": 8})
    tuned = finetune_task(encoder, data, preset, seed=0)
    acc = {name: ev.primary_metrics()["value"].item() for name, ev in (("frozen", frozen), ("tuned", tuned))}
    assert acc["frozen"] <= 70 and acc["tuned"] >= 90, acc
    assert tuned.primary_metrics()["task"].item() == "Syn (fine-tuned)"


def test_axes_are_tasks_of_their_own_with_baseline_rows_and_items():
    preset = get_preset("smoke", {"downstream.train": 40, "downstream.test": 20, "data.max_tokens": 66,
                                  "downstream.finetune_epochs": 1, "downstream.finetune_train": 24})
    ev = evaluate_encoder(build_model("rna", "tiny", seed=0), "rna", preset, seed=2, tasks={"TypeCls"})
    base = evaluate_baselines("rna", preset, seed=2, tasks={"TypeCls"})
    axes = ["TypeCls", "TypeCls (+composition)", "TypeCls (fine-tuned)"]
    for result in (ev, base):
        prim = result.primary_metrics().set_index("task")
        assert sorted(prim.index) == axes and (prim["metric"] == "ACC").all()
        got = result.item_metrics()
        assert all(got[t] == pytest.approx(prim.loc[t, "value"]) for t in axes)
        assert all(set(result.items.query("task == @t")["item"]) == set(ev.items.query("task == 'TypeCls'")["item"])
                   for t in axes)                           # the same test items on every axis, paired
    rows = ev.metrics.set_index(["task", "metric"])["value"]
    assert rows["TypeCls (fine-tuned)", "train rows"] == 24 and rows["TypeCls (fine-tuned)", "epochs"] == 1
    assert base.metrics.query("primary")["protocol"].eq("composition:kmer").all()
    k = base.metrics.query("metric == 'k'").set_index("task")["value"]                 # the block: low-order k-mers
    assert k["TypeCls (+composition)"] == BLOCK_K["rna"] == rows["TypeCls (+composition)", "k"]
    none = evaluate_encoder(build_model("rna", "tiny", seed=0), "rna", preset, seed=2, tasks={"TypeCls"}, variants=())
    assert list(none.primary_metrics()["task"]) == ["TypeCls"]
