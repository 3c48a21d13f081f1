"""Downstream tasks on the embedded labelled sets (Section 4.2, Appendix B): the registry (one primary
metric per task, corelib.evaluation.registry), scoring with per-item tables (results), and one call that
scores an encoder on all of them: linear / attention probes by default (probes), with each task's comparison
axes (its incremental probe, and for the tasks that have it the "fine-tuned" axis: Appendix B's protocol, the
whole encoder trained with the task's head), and Appendix B's trained heads as a secondary protocol
(`protocol="heads"`).
"""
from __future__ import annotations

from corelib.errors import InputError
from corelib.evaluation.heads import PROTOCOLS, finetuned, predict, train_head
from corelib.evaluation.probes import probe_encoder
from corelib.evaluation.registry import FINETUNED, VARIANTS, select_tasks
from corelib.evaluation.results import Evaluation
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


def finetune_task(encoder, data: TaskData, preset, seed: int = 0, device="cpu") -> Evaluation:
    """The "fine-tuned" axis of a task (Appendix B.1): the task's head and the whole encoder (a copy) trained with
    AdamW on at most `downstream.finetune_train` train rows (drawn with `seed`) for `downstream.finetune_epochs`
    epochs at `downstream.finetune_lr` in batches of `downstream.finetune_batch` (None: Appendix B's), then the
    test split scored; rows named
    "<task> (fine-tuned)", with the epochs and train rows as secondary rows."""
    d = preset.downstream
    protocol = finetuned(PROTOCOLS[data.task.protocol]).scaled(d.finetune_epochs, d.finetune_lr, d.finetune_batch)
    train = data.train_rows(d.finetune_train, seed)
    model = train_head(encoder, protocol, train.tokens, train.labels, outputs=data.outputs, seed=seed, device=device)
    variant = data.variant(FINETUNED)
    return variant.finish(predict(model, data.test.tokens, device=device), VARIANTS[FINETUNED],
                          {"epochs": protocol.epochs, "train rows": len(train.tokens)})


def evaluate_finetuned(encoder, modality: str, preset, seed: int = 0, device="cpu", tasks=None) -> Evaluation:
    """The "fine-tuned" axis (`finetune_task`) of every available task of the modality that has it (Section 4.2,
    Appendix B.1), on the same splits and test items as its probe."""
    limits = (preset.downstream.train, preset.downstream.test)
    return Evaluation.concat(
        finetune_task(encoder, TaskData.load(t, modality, preset.data.max_tokens, limits, seed), preset, seed, device)
        for t in select_tasks(modality, tasks) if FINETUNED in t.variants)


def evaluate_encoder(encoder, modality: str, preset, seed: int = 0, device="cpu", tasks=None,
                     protocol: str = "probe", variants=tuple(VARIANTS)) -> Evaluation:
    """Downstream evaluation of one encoder and seed (Section 4.2): every available task of the modality
    (or those named in `tasks`), by the probes (default) or Appendix B's heads (`protocol="heads"`). The probes
    come with each task's comparison axes named in `variants` (default: all; `()`: none): "+composition" (the
    incremental probe) and "fine-tuned" (Appendix B's protocol, `finetune_task`), each its own task in the rows."""
    if protocol not in EVALUATION_PROTOCOLS:
        raise InputError(f"protocol must be one of {', '.join(EVALUATION_PROTOCOLS)}, got {protocol!r}")
    if protocol == "heads":
        return evaluate_heads(encoder, modality, preset, seed=seed, device=device, tasks=tasks)
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise InputError(f"unknown task variant(s) {', '.join(sorted(unknown))}; known: {', '.join(VARIANTS)}")
    parts = [probe_encoder(encoder, modality, preset, seed=seed, device=device, tasks=tasks, variants=variants)]
    if FINETUNED in variants:
        parts.append(evaluate_finetuned(encoder, modality, preset, seed=seed, device=device, tasks=tasks))
    return Evaluation.concat(parts)
