"""Evaluation layer: downstream metrics, heads and tasks (Section 4.2, Appendix B)."""
from corelib.evaluation import metrics
from corelib.evaluation.heads import (
    PAIR_CHANNELS,
    PAIR_DIM,
    PROTOCOLS,
    DownstreamModel,
    Head,
    Protocol,
    encode_frozen,
    pair_weight,
    predict,
    residue_states,
    train_head,
)
from corelib.evaluation.tasks import (
    LONG_RANGE,
    MIN_LOOP,
    SS3,
    TASKS,
    Task,
    available,
    decode_pairs,
    evaluate_encoder,
    pair_density,
    score_task,
    task_data,
)

__all__ = ['metrics', 'Protocol', 'PROTOCOLS', 'PAIR_DIM', 'PAIR_CHANNELS', 'Head', 'residue_states', 'DownstreamModel', 'pair_weight', 'encode_frozen', 'train_head', 'predict', 'MIN_LOOP', 'LONG_RANGE', 'SS3', 'Task', 'TASKS', 'available', 'task_data', 'decode_pairs', 'pair_density', 'score_task', 'evaluate_encoder']
