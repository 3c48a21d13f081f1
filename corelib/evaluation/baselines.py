"""What composition alone gets (Section 4.2 floor): every task scored with the SAME probe as the encoders
(corelib.evaluation.probes) on features that know only residue identities and positions
(corelib.evaluation.composition):

- sequence tasks: frequencies of all j-mers, j = 1..k (k <= 4 for RNA, <= 2 for protein), k and the L2
  strength chosen on the valid split ("composition:kmer");
- residue tasks: one-hot of the residues in a window of +-7 ("composition:onehot-window");
- pair tasks: one-hot of the two residues' identities (their outer product) plus a one-hot of the binned
  separation |i - j| ("composition:onehot-pair"), on the same drawn train pairs as the attention probe.

The rows form one cell, BASELINE_CELL ("Composition"); the `protocol` column names the features. A task's
"fine-tuned" axis gets the task's composition rows under its name; its "+composition" axis (the incremental
probe) the k-mer probe of the incremental probe's composition block alone (k = `composition.BLOCK_K`).
"""
from __future__ import annotations

import numpy as np

from corelib.evaluation.composition import BLOCK_K, WINDOW, kmer_candidates, pair_onehot, window_features
from corelib.evaluation.features import pair_pool, upper_pairs
from corelib.evaluation.probes import probe_pairs, probe_residues, probe_sequences
from corelib.evaluation.registry import INCREMENTAL, VARIANTS, select_tasks
from corelib.evaluation.results import Evaluation
from corelib.evaluation.task_data import SPLITS, TaskData

BASELINE_CELL = "Composition"


def _baseline_task(data: TaskData, modality: str, seed: int) -> Evaluation:
    task = data.task
    if task.level == "sequence":
        outputs, info = probe_sequences(data, kmer_candidates(data.splits, modality), seed)
        extra = {"k": info["choice"], "C": info["C"], f"valid {task.primary}": info["valid"]}
    elif task.level == "residue":
        cands = {WINDOW: tuple([window_features(t, modality) for t in data.splits[s].tokens] for s in SPLITS)}
        outputs, info = probe_residues(data, cands, seed)
        extra = {"window": WINDOW, "C": info["C"], f"valid {task.primary}": info["valid"]}
    else:
        regression = task.label_kind.regression
        train = []
        for k, (t, lab) in enumerate(zip(data.train.tokens, data.train.labels)):
            i, j, y = pair_pool(np.asarray(lab), k, regression)
            train.append((i, j, y, pair_onehot(t, modality, i, j)))
        test = []
        for t, lab in zip(data.test.tokens, data.test.labels):
            i, j = upper_pairs(np.asarray(lab))
            test.append((i, j, np.asarray(lab)[i, j], pair_onehot(t, modality, i, j)))
        outputs = probe_pairs(task, train, test, [len(t) - 2 for t in data.test.tokens], seed)
        extra = {}
    return data.finish(outputs, task.baseline, extra)


def _block_task(data: TaskData, modality: str, seed: int) -> Evaluation:
    """The incremental probe's composition block alone (k-mers up to BLOCK_K), C chosen on valid."""
    k = BLOCK_K[modality]
    variant = data.variant(INCREMENTAL)
    outputs, info = probe_sequences(variant, kmer_candidates(data.splits, modality, (k,)), seed)
    return variant.finish(outputs, data.task.baseline, {"k": k, "C": info["C"],
                                                        f"valid {data.task.primary}": info["valid"]})


def evaluate_baselines(modality: str, preset, seed: int = 0, tasks=None, variants=tuple(VARIANTS)) -> Evaluation:
    """The composition baselines of every available task of a modality (one cell, "Composition"): the
    probes of Section 4.2's evaluation on identity-only features, same splits, limits and seed; each comparison
    axis of a task (those of its variants in `variants`) gets its baseline rows under its name (module docstring)."""
    limits = (preset.downstream.train, preset.downstream.test)
    parts = []
    for t in select_tasks(modality, tasks):
        data = TaskData.load(t, modality, preset.data.max_tokens, limits, seed)
        base = _baseline_task(data, modality, seed)
        parts.append(base)
        for v in t.variants:
            if v in variants:
                parts.append(_block_task(data, modality, seed) if v == INCREMENTAL else
                             base.renamed(t.name, t.variant(v).name))
    return Evaluation.concat(parts)
