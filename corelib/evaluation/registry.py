"""The downstream task registry (Section 4.2, Appendix B; Tables 1-3): which labelled set, label kind and
ONE primary (claim-bearing) metric each task has, which probe scores an encoder on it and which
composition baseline it is compared with, plus the train / valid / test data of a task.

Every primary metric is higher-is-better and is a ratio of per-item sums (`scoring.score`), so a
verdict can resample test items. Secondary metrics are reported with `primary=False`.

RNA "Contact" (Table 2c) is not a task of its own here: on the embedded sets its labels are the
SecStruct base pairs, scored from the same probe, so its top-L precisions are reported as secondary
rows of task "Contact" (all `primary=False`) and bear no claim.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from corelib.data.labelled import ca_coordinates, contact_map, load_labelled
from corelib.data.tokens import tokenize
from corelib.evaluation import metrics

MIN_LOOP = 4          # a base pair needs j - i >= 4 (a hairpin loop of at least 3 nt)

MIN_CONTACT = 6       # protein contacts are trained and scored on |i - j| >= 6 (Rao et al. 2020)

LONG_RANGE = 24       # long-range contacts: |i - j| >= 24 (Table 2c)

SS3 = "HEC"

LEVELS = {"class": "sequence", "multilabel": "sequence", "binary": "sequence", "regression": "sequence",
          "ss3": "residue", "pairs": "pair", "contacts": "pair", "distance": "pair"}

PROBES = {   # the default protocol per task level (corelib.evaluation.probes)
    "sequence": "probe:pooled-linear",     # mean-pooled states of each layer, linear probe, layer chosen on valid
    "residue": "probe:residue-linear",     # per-residue states of each layer, linear probe, layer chosen on valid
    "pair": "probe:attention-apc",         # symmetrised, APC-corrected attention maps of all layers and heads
}

BASELINES = {   # what composition alone gets, with the same probe (corelib.evaluation.baselines)
    "sequence": "composition:kmer",         # k-mer frequencies, k chosen on valid
    "residue": "composition:onehot-window",  # one-hot window of +-7 residues
    "pair": "composition:onehot-pair",     # one-hot of both residues' identities (outer product) + separation bin
}


@dataclass(frozen=True)
class Task:
    """One downstream task: labelled set, label kind, Appendix B protocol (heads), table, primary metric."""

    name: str
    dataset: str
    kind: str
    protocol: str
    table: str
    primary: str = ""
    secondary: tuple[str, ...] = ()

    @property
    def level(self) -> str:
        """Section 4.2: sequence, residue or pair, what one label belongs to."""
        return LEVELS[self.kind.split(":")[0]]

    @property
    def probe(self) -> str:
        """Section 4.2: the default probe of the task (PROBES)."""
        return PROBES[self.level]

    @property
    def baseline(self) -> str:
        """Section 4.2: the composition baseline of the task (BASELINES)."""
        return BASELINES[self.level]

    @property
    def min_separation(self) -> int:
        """Tables 2a, 2c, 3: smallest |i - j| of a pair that counts (pair tasks; 1 elsewhere)."""
        return {"pairs": MIN_LOOP, "contacts": MIN_CONTACT}.get(self.kind, 1)


TASKS = {   # datasets named bench:<task> are external (corelib.benchmarks): evaluated when their files are there
    "rna": [Task("TypeCls", "rna_typecls", "class:label", "typecls", "1", "ACC", ("F1",)),
            Task("Modif", "bench:Modif", "multilabel", "modif", "1", "AUC"),
            Task("CRI-On", "bench:CRI-On", "regression", "crispr", "1", "SC", ("MSE",)),
            Task("SecStruct", "rna_ss", "pairs", "ss_rna", "2a", "F1", ("Pre", "Rec", "MCC")),
            Task("DistMap", "bench:DistMap", "distance", "distance_rna", "2b", "R2", ("SC", "MAE", "MSE")),
            Task("RBP", "bench:RBP", "binary", "rbp", "2d", "ACC", ("AUC", "AUPR"))],
    "protein": [Task("Bin", "protein_loc", "class:membrane", "localization", "3", "ACC"),
                Task("Loc", "protein_loc", "class:compartment", "localization", "3", "ACC"),
                Task("SS", "protein_struct", "ss3", "ss_protein", "3", "ACC"),
                Task("Contact", "protein_struct", "contacts", "contact_protein", "3", "L/5", ("L", "L/2")),
                Task("Aff", "bench:Aff", "regression", "affinity", "3", "SC", ("MAE", "RMSE"))],
}


def registry() -> pd.DataFrame:
    """The task registry as a table (Section 4.2): modality, task, set, primary metric, probe, baseline."""
    return pd.DataFrame([{"modality": m, "task": t.name, "dataset": t.dataset, "table": t.table, "level": t.level,
                          "primary": t.primary, "secondary": ", ".join(t.secondary), "probe": t.probe,
                          "baseline": t.baseline} for m, ts in TASKS.items() for t in ts])


def available(task: Task) -> bool:
    """Section 4.2: whether a task's data are here (the embedded sets always; external benchmarks once placed)."""
    if not task.dataset.startswith("bench:"):
        return True
    from corelib.data.benchmarks import benchmark_folder

    return benchmark_folder(task.name).exists()


def select_tasks(modality: str, tasks=None) -> list[Task]:
    """Section 4.2: the tasks of a modality whose data are here, restricted to the names in `tasks` (None: all)."""
    return [t for t in TASKS[modality] if (not tasks or t.name in tasks) and available(t)]


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
        return [_pair_matrix(len(seq), metrics.pairs_from_dotbracket(structure), task.min_separation)
                for seq, structure in zip(df["seq"], df["structure"])]
    if task.kind == "ss3":
        return [np.array([SS3.index(c) for c in s]) for s in df["ss3"]]
    if task.kind == "multilabel":
        return np.stack(df["labels"].to_list())
    if task.kind in ("regression", "binary"):
        return df["label"].to_numpy()
    if task.kind == "distance":
        return [np.nan_to_num(d, nan=-1.0) for d in df["distances"]]
    return [_mask_near(contact_map(ca_coordinates(c)).astype(np.float32), task.min_separation) for c in df["ca"]]


def _pair_matrix(n: int, pairs, min_sep: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.float32)
    for i, j in pairs:
        m[i, j] = m[j, i] = 1
    return _mask_near(m, min_sep)


def _mask_near(m: np.ndarray, min_sep: int) -> np.ndarray:
    idx = np.arange(len(m))
    m[np.abs(idx[:, None] - idx[None, :]) < min_sep] = -1
    return m


SPLITS = ("train", "valid", "test")


def task_data(task: Task, modality: str, max_tokens: int, limits=(None, None), seed: int = 0) -> dict:
    """Train / valid / test tokens, labels and item ids of a task (Section 4.2): at most limits[0] train and
    limits[1] valid and test rows: train rows drawn with `seed`, valid and test rows fixed (seed 0) so the same
    test items are paired across seeds and arms (a set without a valid split gives 15% of its train rows).
    Pair labels are n x n with -1 where a pair does not count."""
    df = _table(task)
    classes = sorted(df[task.kind.split(":")[1]].unique().tolist()) if task.kind.startswith("class:") else None
    out = {"classes": classes, "ids": {}}
    parts = {split: df[df["split"] == split] for split in SPLITS}
    if parts["valid"].empty and len(parts["train"]) >= 2:   # a set without a valid split: 15% of train
        held = parts["train"].sample(n=max(1, round(0.15 * len(parts["train"]))), random_state=0)
        parts = {**parts, "valid": held, "train": parts["train"].drop(held.index)}
    for split, limit in zip(SPLITS, (limits[0], limits[1], limits[1])):
        part = parts[split]
        if limit is not None and len(part) > limit:
            part = part.sample(n=limit, random_state=seed if split == "train" else 0)
        toks = _tokens(part, modality, max_tokens)
        labels = _labels(task, part, classes) if len(part) else []
        if task.kind in ("pairs", "ss3", "contacts", "distance"):   # crop labels like the tokens
            labels = [lab[: len(t) - 2, : len(t) - 2] if lab.ndim == 2 else lab[: len(t) - 2] for lab, t in zip(labels, toks)]
        out[split] = (toks, labels)
        ids = part["id"].astype(str).tolist() if "id" in part.columns else [f"{split}:{i}" for i in part.index]
        out["ids"][split] = ids
    out["outputs"] = len(classes) if classes else {"ss3": 3, "multilabel": 12, "binary": 2}.get(task.kind, 1)
    return out
