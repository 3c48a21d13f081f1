"""Evaluation layer: downstream tasks (registry, label kinds, task data), frozen-encoder probes, composition
baselines, Appendix B heads, metrics and the intrinsic held-out MLM loss (Section 4.2, Appendix B)."""
from corelib.evaluation.baselines import evaluate_baselines
from corelib.evaluation.intrinsic import heldout_mlm_loss
from corelib.evaluation.registry import TASKS, Task, available, registry
from corelib.evaluation.results import Evaluation
from corelib.evaluation.task_data import TaskData
from corelib.evaluation.tasks import evaluate_encoder

__all__ = [
    "TASKS",
    "Evaluation",
    "Task",
    "TaskData",
    "available",
    "evaluate_baselines",
    "evaluate_encoder",
    "heldout_mlm_loss",
    "registry",
]
