"""Evaluation layer: downstream tasks (registry, label kinds, task data), frozen-encoder probes, composition
baselines, Appendix B heads, metrics and the intrinsic held-out MLM loss (Section 4.2, Appendix B)."""
from corelib.evaluation.baselines import BASELINE_CELL, evaluate_baselines
from corelib.evaluation.heads import PROTOCOLS, Protocol, train_head
from corelib.evaluation.intrinsic import heldout_mlm_loss
from corelib.evaluation.kinds import KINDS, LabelKind, get_kind
from corelib.evaluation.probes import probe_encoder
from corelib.evaluation.registry import TASKS, Task, available, registry, select_tasks
from corelib.evaluation.scoring import Evaluation, score
from corelib.evaluation.task_data import TaskData
from corelib.evaluation.tasks import EVALUATION_PROTOCOLS, evaluate_encoder

__all__ = [
    "BASELINE_CELL",
    "EVALUATION_PROTOCOLS",
    "KINDS",
    "PROTOCOLS",
    "TASKS",
    "Evaluation",
    "LabelKind",
    "Protocol",
    "Task",
    "TaskData",
    "available",
    "evaluate_baselines",
    "evaluate_encoder",
    "get_kind",
    "heldout_mlm_loss",
    "probe_encoder",
    "registry",
    "score",
    "select_tasks",
    "train_head",
]
