"""Downstream tasks on the embedded labelled sets (Section 4.2, Appendix B): the registry (one primary
metric per task, corelib.evaluation.registry), scoring with per-item tables (scoring), and one call that
scores an encoder on all of them: linear / attention probes by default (probes), Appendix B's trained
heads as a secondary protocol (`protocol="heads"`).
"""
from __future__ import annotations

from corelib.errors import InputError
from corelib.evaluation.heads import PROTOCOLS, predict, train_head
from corelib.evaluation.probes import probe_encoder
from corelib.evaluation.registry import select_tasks
from corelib.evaluation.scoring import Evaluation
from corelib.evaluation.task_data import TaskData

EVALUATION_PROTOCOLS = ("probe", "heads")

HEADS = "appendix-b:heads"


def evaluate_heads(encoder, modality: str, preset, seed: int = 0, device="cpu", tasks=None) -> Evaluation:
    """Appendix B's protocol (secondary): train each task's head (fine-tuning the encoder where B says so)
    on the train split and score the test split; same metrics, primary flags and items as the probes."""
    parts = []
    for task in select_tasks(modality, tasks):
        data = TaskData.load(task, modality, preset.data.max_tokens, (preset.downstream.train, preset.downstream.test), seed)
        base = PROTOCOLS[task.protocol]   # the preset's lr replaces B's only for frozen-encoder heads
        protocol = base.scaled(preset.downstream.epochs, None if base.finetune_encoder else preset.downstream.lr)
        model = train_head(encoder, protocol, data.train.tokens, data.train.labels, outputs=data.outputs, seed=seed,
                           device=device)
        parts.append(data.finish(predict(model, data.test.tokens, device=device), HEADS))
    return Evaluation.concat(parts)


def evaluate_encoder(encoder, modality: str, preset, seed: int = 0, device="cpu", tasks=None,
                     protocol: str = "probe") -> Evaluation:
    """Downstream evaluation of one encoder and seed (Section 4.2): every available task of the modality
    (or those named in `tasks`), by the probes (default) or Appendix B's heads (`protocol="heads"`)."""
    if protocol not in EVALUATION_PROTOCOLS:
        raise InputError(f"protocol must be one of {', '.join(EVALUATION_PROTOCOLS)}, got {protocol!r}")
    if protocol == "heads":
        return evaluate_heads(encoder, modality, preset, seed=seed, device=device, tasks=tasks)
    return probe_encoder(encoder, modality, preset, seed=seed, device=device, tasks=tasks)
