"""The downstream task registry (Section 4.2, Appendix B; Tables 1-3): which labelled set, label kind and
ONE primary (claim-bearing) metric each task has, which probe scores an encoder on it and which
composition baseline it is compared with, plus the train / valid / test data of a task.

Every primary metric is higher-is-better and is a ratio of per-item sums (`results.score`), so a
verdict can resample test items. Secondary metrics are reported with `primary=False`.

A task may add comparison axes of its own (VARIANTS), each named "<task> (<variant>)" with the task's primary
metric, its own per-item rows and a composition baseline row: "fine-tuned" (Appendix B's protocol, the whole
encoder trained with the task's head; against the task's composition baseline) and "+composition" (the encoder's
features beside a block of composition features, against that block alone). The experiment grid gates and
compares each axis like a task.

RNA "Contact" (Table 2c) is not a task of its own here: on the embedded sets its labels are the
SecStruct base pairs, scored from the same probe, so its top-L precisions are reported as secondary
rows of task "Contact" (all `primary=False`) and bear no claim.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from corelib.data.labelled import load_labelled
from corelib.errors import InputError
from corelib.evaluation.kinds import LabelKind, get_kind

PROBES = {   # the default protocol per task level (corelib.evaluation.probes)
    "sequence": "probe:pooled-linear",     # mean-pooled states of each layer, linear probe, layer chosen on valid
    "residue": "probe:residue-linear",     # per-residue states of each layer, linear probe, layer chosen on valid
    "pair": "probe:attention-apc+onehot-pair",   # APC-corrected attention maps of all layers and heads, beside
}                                                 # the pair baseline's identity and separation one-hots

BASELINES = {   # what composition alone gets, with the same probe (corelib.evaluation.baselines)
    "sequence": "composition:kmer",         # k-mer frequencies, k chosen on valid
    "residue": "composition:onehot-window",  # one-hot window of +-7 residues
    "pair": "composition:onehot-pair",     # one-hot of both residues' identities (outer product) + separation bin
}


FINETUNED, INCREMENTAL = "fine-tuned", "+composition"

VARIANTS = {   # further comparison axes of a task: variant -> the protocol named in its rows
    FINETUNED: "appendix-b:fine-tuned",    # the whole encoder fine-tuned with the task's head (Appendix B.1)
    INCREMENTAL: "probe:pooled-linear+kmer",   # the chosen layer's pooled states beside low-order k-mer frequencies
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
    variants: tuple[str, ...] = ()   # VARIANTS this task is also evaluated under (each its own axis)

    @property
    def label_kind(self) -> LabelKind:
        """Section 4.2: the registered kind of its labels (`corelib.evaluation.kinds`)."""
        return get_kind(self.kind)

    @property
    def column(self) -> str:
        """Section 4.2: the table column of a class task's labels (`class:<column>`)."""
        return self.kind.partition(":")[2]

    @property
    def level(self) -> str:
        """Section 4.2: sequence, residue or pair, what one label belongs to."""
        return self.label_kind.level

    @property
    def probe(self) -> str:
        """Section 4.2: the default probe of the task (PROBES)."""
        return PROBES[self.level]

    @property
    def baseline(self) -> str:
        """Section 4.2: the composition baseline of the task (BASELINES)."""
        return BASELINES[self.level]

    def variant(self, name: str) -> Task:
        """Section 4.2: the comparison axis `name` (VARIANTS) of this task, a task named "<task> (<name>)"."""
        if name not in VARIANTS:
            raise InputError(f"unknown task variant {name!r}; known: {', '.join(VARIANTS)}")
        return replace(self, name=f"{self.name} ({name})", variants=())

    @property
    def min_separation(self) -> int:
        """Tables 2a, 2c, 3: smallest |i - j| of a pair that counts (pair tasks; 1 elsewhere)."""
        return self.label_kind.min_separation


_FT, _INC = (FINETUNED, INCREMENTAL), (INCREMENTAL,)
# Every sequence task has its incremental probe; the fine-tuned axis: the tasks Appendix B.1 fine-tunes, and
# protein Loc (B.2 freezes the encoder for it; fine-tuned here as B.1 does, with B.2's two-layer head).
TASKS = {   # datasets named bench:<task> are external (corelib.benchmarks): evaluated when their files are there
    "rna": [Task("TypeCls", "rna_typecls", "class:label", "typecls", "1", "ACC", ("F1",), _FT),
            Task("Modif", "bench:Modif", "multilabel", "modif", "1", "AUC", (), _FT),
            Task("CRI-On", "bench:CRI-On", "regression", "crispr", "1", "SC", ("MSE",), _FT),
            Task("SecStruct", "rna_ss", "pairs", "ss_rna", "2a", "F1", ("Pre", "Rec", "MCC")),
            Task("DistMap", "bench:DistMap", "distance", "distance_rna", "2b", "R2", ("SC", "MAE", "MSE")),
            Task("RBP", "bench:RBP", "binary", "rbp", "2d", "ACC", ("AUC", "AUPR"), _INC)],
    "protein": [Task("Bin", "protein_loc", "class:membrane", "localization", "3", "ACC", (), _INC),
                Task("Loc", "protein_loc", "class:compartment", "localization", "3", "ACC", (), _FT),
                Task("SS", "protein_struct", "ss3", "ss_protein", "3", "ACC"),
                Task("Contact", "protein_struct", "contacts", "contact_protein", "3", "L/5", ("L", "L/2")),
                Task("Aff", "bench:Aff", "regression", "affinity", "3", "SC", ("MAE", "RMSE"), _INC)],
}


def registry() -> pd.DataFrame:
    """The task registry as a table (Section 4.2): modality, task, set, primary metric, probe, baseline."""
    return pd.DataFrame([{"modality": m, "task": t.name, "dataset": t.dataset, "table": t.table, "level": t.level,
                          "primary": t.primary, "secondary": ", ".join(t.secondary), "probe": t.probe,
                          "baseline": t.baseline, "variants": ", ".join(t.variants)}
                         for m, ts in TASKS.items() for t in ts])


def available(task: Task) -> bool:
    """Section 4.2: whether a task's data are here (the embedded sets always; external benchmarks once placed)."""
    if not task.dataset.startswith("bench:"):
        return True
    from corelib.data.benchmarks import benchmark_folder

    return benchmark_folder(task.name).exists()


def select_tasks(modality: str, tasks=None) -> list[Task]:
    """Section 4.2: the tasks of a modality whose data are here, restricted to the names in `tasks` (None: all)."""
    return [t for t in TASKS[modality] if (not tasks or t.name in tasks) and available(t)]


def table_of(task: Task) -> pd.DataFrame:
    """Section 4.2: a task's labelled table (an embedded set, or an external benchmark once placed)."""
    if task.dataset.startswith("bench:"):
        from corelib.data.benchmarks import load_benchmark

        return load_benchmark(task.name)
    return load_labelled(task.dataset)
