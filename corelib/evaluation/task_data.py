"""One labelled task's data and its scoring behind one object (Section 4.2): `TaskData.load` reads the train /
valid / test rows, tokens, labels and item ids; every protocol (probes, composition baselines, Appendix B heads)
hands its test outputs to `TaskData.finish`, which scores them and returns the `Evaluation` rows."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from corelib.data.tokens import tokenize
from corelib.evaluation.kinds import pair_density
from corelib.evaluation.registry import Task, table_of
from corelib.evaluation.results import Evaluation, Scored, evaluation, score

SPLITS = ("train", "valid", "test")
VALID_SHARE = 0.15   # of the train rows, for a set without a valid split


@dataclass(frozen=True)
class Split:
    """One split of a task (Section 4.2): token arrays, labels (cropped like the tokens) and item ids."""

    tokens: list
    labels: object
    ids: list


@dataclass(frozen=True)
class TaskData:
    """A task's train / valid / test splits at one seed and what scoring them needs (Section 4.2)."""

    task: Task
    modality: str
    seed: int
    classes: list | None
    splits: dict

    @classmethod
    def load(cls, task: Task, modality: str, max_tokens: int, limits=(None, None), seed: int = 0) -> TaskData:
        """At most limits[0] train and limits[1] valid and test rows (Section 4.2): train rows drawn with `seed`,
        valid and test rows fixed (seed 0) so the same test items are paired across seeds and arms; a set without
        a valid split gives VALID_SHARE of its train rows. Pair labels are n x n with -1 where a pair does not
        count; residue and pair labels are cropped like the tokens."""
        df = table_of(task)
        kind = task.label_kind
        classes = kind.classes(task, df)
        parts = {split: df[df["split"] == split] for split in SPLITS}
        if parts["valid"].empty and len(parts["train"]) >= 2:
            held = parts["train"].sample(n=max(1, round(VALID_SHARE * len(parts["train"]))), random_state=0)
            parts = {**parts, "valid": held, "train": parts["train"].drop(held.index)}
        splits = {}
        for split, limit in zip(SPLITS, (limits[0], limits[1], limits[1])):
            part = parts[split]
            if limit is not None and len(part) > limit:
                part = part.sample(n=limit, random_state=seed if split == "train" else 0)
            toks = _tokens(part, modality, max_tokens)
            labels = kind.labels(task, part, classes) if len(part) else []
            if kind.level != "sequence":   # crop labels like the tokens
                labels = [lab[: len(t) - 2, : len(t) - 2] if lab.ndim == 2 else lab[: len(t) - 2]
                          for lab, t in zip(labels, toks)]
            ids = part["id"].astype(str).tolist() if "id" in part.columns else [f"{split}:{i}" for i in part.index]
            splits[split] = Split(toks, labels, ids)
        return cls(task, modality, seed, classes, splits)

    def variant(self, name: str) -> TaskData:
        """The same data under the task's comparison axis `name` (`Task.variant`): its rows are named after it."""
        return replace(self, task=self.task.variant(name))

    def train_rows(self, limit: int | None, seed: int) -> Split:
        """At most `limit` rows of the train split, drawn with `seed` (in their order); all of them if None."""
        part = self.train
        if limit is None or len(part.tokens) <= limit:
            return part
        keep = np.sort(np.random.default_rng(seed).choice(len(part.tokens), size=limit, replace=False))
        labels = np.asarray(part.labels)[keep] if self.task.level == "sequence" else [part.labels[i] for i in keep]
        return Split([part.tokens[i] for i in keep], labels, [part.ids[i] for i in keep])

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def valid(self) -> Split:
        return self.splits["valid"]

    @property
    def test(self) -> Split:
        return self.splits["test"]

    @property
    def outputs(self) -> int:
        """Outputs of a head (Appendix B) and classes a probe's probabilities are spread over (Section 4.2)."""
        return self.task.label_kind.outputs(self.classes)

    @property
    def density(self) -> float:
        """Train base pairs per nucleotide (how many pairs a structure's decoding predicts; pair tasks)."""
        return pair_density(self.train.labels) if self.task.level == "pair" else 0.0

    def score(self, outputs, split: str = "test") -> Scored:
        """The metrics of a split's outputs and the per-item table of the primary metric (Section 4.2)."""
        part = self.splits[split]
        return score(self.task, outputs, part.labels, part.ids, self.density)

    def primary(self, outputs, split: str = "valid") -> float:
        """The primary metric of a split's outputs (NaN without rows), e.g. for a choice on valid (Section 4.2)."""
        if len(self.splits[split].labels) == 0:
            return float("nan")
        return float(self.score(outputs, split).values[self.task.name][self.task.primary])

    def finish(self, outputs, protocol: str, extra: dict | None = None) -> Evaluation:
        """The Evaluation of test outputs under `protocol`: every metric row and the primary metric's items
        (Section 4.2); `extra` adds secondary rows (e.g. the chosen layer)."""
        return evaluation(self.task, self.score(outputs), self.seed, protocol, extra)


def _tokens(part, modality: str, max_tokens: int) -> list:
    if "seq2" not in part.columns:
        return tokenize(part["seq"].tolist(), modality, max_tokens)
    half = max_tokens // 2     # a pair: <cls> A <eos> B <eos>, each chain cropped to half the tokens
    return [np.concatenate([a, b[1:]]) for a, b in zip(tokenize(part["seq"].tolist(), modality, half),
                                                       tokenize(part["seq2"].tolist(), modality, half))]
