"""Downstream tasks on the embedded labelled sets (Section 4.2, Appendix B): which set, labels, protocol
and metrics make each column of Tables 1-3, and one call that scores an encoder on all of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from corelib.data.labelled import ca_coordinates, contact_map, load_labelled
from corelib.data.tokens import tokenize
from corelib.evaluation import metrics
from corelib.evaluation.heads import PROTOCOLS, predict, train_head

MIN_LOOP = 4          # a base pair needs j - i >= 4 (a hairpin loop of at least 3 nt)

LONG_RANGE = 24       # long-range contacts: |i - j| >= 24 (Table 2c)

SS3 = "HEC"


@dataclass(frozen=True)
class Task:
    """One downstream task: labelled set, label kind, protocol, the table columns it fills."""

    name: str
    dataset: str
    kind: str
    protocol: str
    table: str

TASKS = {   # datasets named bench:<task> are external (corelib.benchmarks): evaluated when their files are there
    "rna": [Task("TypeCls", "rna_typecls", "class:label", "typecls", "1"),
            Task("Modif", "bench:Modif", "multilabel", "modif", "1"),
            Task("CRI-On", "bench:CRI-On", "regression", "crispr", "1"),
            Task("SecStruct", "rna_ss", "pairs", "ss_rna", "2a"),
            Task("DistMap", "bench:DistMap", "distance", "distance_rna", "2b"),
            Task("RBP", "bench:RBP", "binary", "rbp", "2d")],
    "protein": [Task("Bin", "protein_loc", "class:membrane", "localization", "3"),
                Task("Loc", "protein_loc", "class:compartment", "localization", "3"),
                Task("SS", "protein_struct", "ss3", "ss_protein", "3"),
                Task("Contact", "protein_struct", "contacts", "contact_protein", "3"),
                Task("Aff", "bench:Aff", "regression", "affinity", "3")],
}


def available(task: Task) -> bool:
    """Whether a task's data are here (the embedded sets always; external benchmarks once placed)."""
    if not task.dataset.startswith("bench:"):
        return True
    from corelib.data.benchmarks import benchmark_folder

    return benchmark_folder(task.name).exists()


def _table(task: Task) -> pd.DataFrame:
    if task.dataset.startswith("bench:"):
        from corelib.data.benchmarks import load_benchmark

        return load_benchmark(task.name)
    return load_labelled(task.dataset)


def _tokens(part: pd.DataFrame, modality: str, max_tokens: int) -> list:
    if "seq2" not in part.columns:
        return tokenize(part["seq"].tolist(), modality, max_tokens)
    half = max_tokens // 2     # a pair: <cls> A <eos> B <eos>, each chain cropped to half the tokens
    return [np.concatenate([a, b[1:]]) for a, b in zip(tokenize(part["seq"].tolist(), modality, half),
                                                       tokenize(part["seq2"].tolist(), modality, half))]


def _labels(task: Task, df: pd.DataFrame, classes: list | None):
    if task.kind.startswith("class:"):
        col = task.kind.split(":")[1]
        return np.array([classes.index(v) for v in df[col]])
    if task.kind == "pairs":
        out = []
        for seq, structure in zip(df["seq"], df["structure"]):
            m = _pair_matrix(len(seq), metrics.pairs_from_dotbracket(structure), MIN_LOOP)
            out.append(m)
        return out
    if task.kind == "ss3":
        return [np.array([SS3.index(c) for c in s]) for s in df["ss3"]]
    if task.kind == "multilabel":
        return np.stack(df["labels"].to_list())
    if task.kind in ("regression", "binary"):
        return df["label"].to_numpy()
    if task.kind == "distance":
        return [np.nan_to_num(d, nan=-1.0) for d in df["distances"]]
    return [_mask_near(contact_map(ca_coordinates(c)).astype(np.float32), 6) for c in df["ca"]]


def _pair_matrix(n: int, pairs, min_sep: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.float32)
    for i, j in pairs:
        m[i, j] = m[j, i] = 1
    return _mask_near(m, min_sep)


def _mask_near(m: np.ndarray, min_sep: int) -> np.ndarray:
    idx = np.arange(len(m))
    m[np.abs(idx[:, None] - idx[None, :]) < min_sep] = -1
    return m


def task_data(task: Task, modality: str, max_tokens: int, limits=(None, None), seed: int = 0) -> dict:
    """Train and test tokens and labels of a task (at most limits[0] / limits[1] rows, drawn with a fixed seed)."""
    df = _table(task)
    classes = sorted(df[task.kind.split(":")[1]].unique().tolist()) if task.kind.startswith("class:") else None
    out = {"classes": classes}
    for split, limit in zip(("train", "test"), limits):
        part = df[df["split"] == split]
        if limit is not None and len(part) > limit:
            part = part.sample(n=limit, random_state=seed)
        toks = _tokens(part, modality, max_tokens)
        labels = _labels(task, part, classes)
        if task.kind in ("pairs", "ss3", "contacts", "distance"):   # crop labels like the tokens
            labels = [lab[: len(t) - 2, : len(t) - 2] if lab.ndim == 2 else lab[: len(t) - 2] for lab, t in zip(labels, toks)]
        out[split] = (toks, labels)
    out["outputs"] = len(classes) if classes else {"ss3": 3, "multilabel": 12, "binary": 2}.get(task.kind, 1)
    return out


def decode_pairs(scores: np.ndarray, count: int, min_sep: int = MIN_LOOP) -> set[tuple[int, int]]:
    """Base pairs from an n x n score matrix: the best-scoring pairs (j - i >= min_sep), each base at most
    once, until `count` pairs are taken."""
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
    """Base pairs per nucleotide in a set of pair matrices (how many pairs `decode_pairs` predicts)."""
    return sum(float((np.triu(m) > 0).sum()) for m in labels) / max(1, sum(len(m) for m in labels))


def score_task(task: Task, outputs, labels, density: float = 0.0) -> dict:
    """Metrics of one task, named as the paper's table columns (Section 4.2); `density` is the train
    set's base pairs per nucleotide (a sequence of n nt gets round(density * n) predicted pairs)."""
    if task.kind.startswith("class:"):
        m = metrics.classification(labels, np.asarray(outputs).argmax(1))
        return m if task.name == "TypeCls" else {"ACC": m["ACC"]}
    if task.kind == "ss3":
        return {"ACC": metrics.classification(np.concatenate(labels), np.concatenate([o.argmax(1) for o in outputs]))["ACC"]}
    if task.kind == "multilabel":   # mean AUC over the labels present with both classes in the test set
        both = [k for k in range(labels.shape[1]) if 0 < labels[:, k].sum() < len(labels)]
        return {"AUC": metrics.ranking(labels[:, both], np.asarray(outputs)[:, both])["AUC"]}
    if task.kind == "binary":
        logits = np.asarray(outputs)
        prob = np.exp(logits[:, 1] - np.logaddexp(logits[:, 0], logits[:, 1]))
        return {"ACC": metrics.classification(labels, logits.argmax(1))["ACC"], **metrics.ranking(labels, prob)}
    if task.kind == "regression":
        m = metrics.regression(labels, np.asarray(outputs).ravel())
        return {k: m[k] for k in (("SC", "MSE") if task.name == "CRI-On" else ("MAE", "RMSE"))}
    if task.kind == "distance":     # over the pairs i < j with a known distance
        keep = [np.triu(lab >= 0, k=1) for lab in labels]
        m = metrics.regression(np.concatenate([lab[k] for lab, k in zip(labels, keep)]),
                               np.concatenate([out[k] for out, k in zip(outputs, keep)]))
        return {k: m[k] for k in ("R2", "SC", "MAE", "MSE")}
    rows = []
    for out, lab in zip(outputs, labels):
        true = (lab > 0).astype(np.int8)
        row = metrics.contact_precision(true, (out + out.T) / 2, min_separation=LONG_RANGE)
        if task.kind == "pairs":
            truth = {(int(a), int(b)) for a, b in zip(*np.nonzero(np.triu(true)))}
            row.update(metrics.base_pairs(truth, decode_pairs(out, round(density * len(lab))), len(lab)))
        rows.append(row)
    mean = pd.DataFrame(rows).mean().to_dict()
    if task.kind == "pairs":   # Table 2a and, from the same head, Table 2c
        return {"SecStruct": {k: mean[k] for k in ("Pre", "Rec", "F1", "MCC")},
                "Contact": {k: mean[k] for k in ("L", "L/2", "L/5", "L/10")}}
    return {k: mean[k] for k in ("L", "L/2", "L/5")}


def evaluate_encoder(encoder, modality: str, preset, seed: int = 0, device="cpu", tasks=None) -> pd.DataFrame:
    """Train each task's head on the train split and score the test split: long rows (task, metric, value, seed)."""
    rows = []
    for task in TASKS[modality]:
        if (tasks and task.name not in tasks) or not available(task):
            continue
        data = task_data(task, modality, preset.data.max_tokens, (preset.downstream.train, preset.downstream.test))
        base = PROTOCOLS[task.protocol]   # the preset's lr replaces B's only for frozen-encoder heads
        protocol = base.scaled(preset.downstream.epochs, None if base.finetune_encoder else preset.downstream.lr)
        model = train_head(encoder, protocol, *data["train"], outputs=data["outputs"], seed=seed, device=device)
        density = pair_density(data["train"][1]) if task.kind == "pairs" else 0.0
        result = score_task(task, predict(model, data["test"][0], device=device), data["test"][1], density)
        groups = result if task.kind == "pairs" else {task.name: result}
        for name, values in groups.items():
            rows += [{"task": name, "metric": k, "value": float(v), "seed": seed} for k, v in values.items()]
    return pd.DataFrame(rows)
