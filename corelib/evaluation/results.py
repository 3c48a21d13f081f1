"""Scoring a task's test predictions (Section 4.2, Tables 1-3): its metrics, named as the paper's table columns,
and for its ONE primary metric a per-item table (num, den) with primary metric == items.num.sum() / items.den.sum(),
so that verdicts can resample test items. Each label kind scores its own outputs (`corelib.evaluation.kinds`,
whose docstring gives every primary metric's per-item decomposition).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from corelib.evaluation.registry import Task

METRIC_COLUMNS = ["task", "metric", "value", "seed", "primary", "protocol"]

ITEM_COLUMNS = ["task", "item", "num", "den", "seed"]


def _empty(columns) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


@dataclass
class Evaluation:
    """Downstream results of one encoder and seed (Section 4.2): long metric rows and, for each task's
    primary metric, per-test-item rows with metric == num.sum() / den.sum() (per task)."""

    metrics: pd.DataFrame = field(default_factory=lambda: _empty(
        {"task": str, "metric": str, "value": float, "seed": int, "primary": bool, "protocol": str}))
    items: pd.DataFrame = field(default_factory=lambda: _empty(
        {"task": str, "item": str, "num": float, "den": float, "seed": int}))

    @classmethod
    def concat(cls, parts) -> Evaluation:
        """Section 4.2: one Evaluation from several (e.g. one per task)."""
        parts = list(parts)
        if not parts:
            return cls()
        return cls(pd.concat([p.metrics for p in parts], ignore_index=True)[METRIC_COLUMNS],
                   pd.concat([p.items for p in parts], ignore_index=True)[ITEM_COLUMNS])

    def renamed(self, task: str, name: str) -> Evaluation:
        """Section 4.2: the rows of `task` (metrics and items) under the task name `name` (e.g. a baseline's rows
        copied to a comparison axis of the task)."""
        return Evaluation(self.metrics[self.metrics["task"] == task].assign(task=name).reset_index(drop=True),
                          self.items[self.items["task"] == task].assign(task=name).reset_index(drop=True))

    def primary_metrics(self) -> pd.DataFrame:
        """Section 4.2: the primary metric rows only (one per task)."""
        return self.metrics[self.metrics["primary"]].reset_index(drop=True)

    def item_metrics(self) -> pd.Series:
        """Section 4.2: per task, items.num.sum() / items.den.sum(): equals the primary metric's value."""
        sums = self.items.groupby("task")[["num", "den"]].sum()
        return sums["num"] / sums["den"]


# ----------------------------------------------------------------------------- scoring
@dataclass
class Scored:
    """Section 4.2: a task's metric values by group ({task: {metric: value}}, RNA SecStruct also "Contact") and the
    per-item table (item, num, den) of its primary metric."""

    values: dict
    items: pd.DataFrame


def _ids(ids, n: int) -> list[str]:
    return [str(i) for i in ids] if ids is not None else [str(i) for i in range(n)]


def score(task: Task, outputs, labels, ids=None, density: float = 0.0) -> Scored:
    """Metrics of a task's test predictions, named as the paper's columns (Section 4.2, Tables 1-3), and
    the per-item table of its primary metric (its label kind's `score`). Outputs: (N, K) class scores, (N, K) label
    scores (multilabel), (N,) values (regression), a list of (n_i, K) residue scores, or a list of n_i x n_i pair
    scores; `density` = train base pairs per nucleotide (a structure of n nt gets round(density n) pairs)."""
    groups, num, den = task.label_kind.score(task, outputs, labels, density)
    items = pd.DataFrame({"item": _ids(ids, len(labels)), "num": np.asarray(num, dtype=float),
                          "den": np.asarray(den, dtype=float)})
    return Scored(groups, items)


def score_task(task: Task, outputs, labels, density: float = 0.0) -> dict:
    """Metrics of one task, named as the paper's table columns (Section 4.2): {metric: value}, or for RNA
    SecStruct {"SecStruct": {...}, "Contact": {...}} (Tables 2a and 2c from the same scores)."""
    values = score(task, outputs, labels, density=density).values
    return values if len(values) > 1 else values[task.name]


def evaluation(task: Task, scored: Scored, seed: int, protocol: str, extra: dict | None = None) -> Evaluation:
    """Section 4.2: the Evaluation of one scored task: metric rows (primary = the task's primary metric; `extra` adds
    secondary rows, e.g. the chosen layer) and the primary metric's item rows."""
    rows = [{"task": group, "metric": k, "value": float(v), "seed": seed,
             "primary": group == task.name and k == task.primary, "protocol": protocol}
            for group, values in scored.values.items() for k, v in values.items()]
    rows += [{"task": task.name, "metric": k, "value": float(v), "seed": seed, "primary": False, "protocol": protocol}
             for k, v in (extra or {}).items()]
    items = scored.items.assign(task=task.name, seed=seed)
    return Evaluation(pd.DataFrame(rows, columns=METRIC_COLUMNS).astype({"primary": bool}), items[ITEM_COLUMNS])
