"""Evaluation layer: downstream task registry, probes, composition baselines, Appendix B heads, metrics and
the intrinsic held-out MLM loss (Section 4.2, Appendix B)."""
from corelib.evaluation import metrics
from corelib.evaluation.baselines import BASELINE_CELL, evaluate_baselines, kmer_features, pair_onehot, window_features
from corelib.evaluation.features import clear_cache, fingerprint, forward_features, split_features, symmetric_apc
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
from corelib.evaluation.intrinsic import family_losses, heldout_mlm_loss, unigram_entropy
from corelib.evaluation.probes import (
    draw_pairs,
    linear_model,
    probe_encoder,
    probe_pairs,
    probe_residues,
    probe_sequences,
)
from corelib.evaluation.registry import (
    LONG_RANGE,
    MIN_CONTACT,
    MIN_LOOP,
    SS3,
    TASKS,
    Task,
    available,
    registry,
    task_data,
)
from corelib.evaluation.scoring import (
    Evaluation,
    auc_items,
    decode_pairs,
    pair_density,
    score,
    score_task,
    spearman_items,
)
from corelib.evaluation.tasks import EVALUATION_PROTOCOLS, HEADS, evaluate_encoder, evaluate_heads

__all__ = ['metrics', 'Protocol', 'PROTOCOLS', 'PAIR_DIM', 'PAIR_CHANNELS', 'Head', 'residue_states', 'DownstreamModel',
           'pair_weight', 'encode_frozen', 'train_head', 'predict', 'MIN_LOOP', 'MIN_CONTACT', 'LONG_RANGE', 'SS3', 'Task',
           'TASKS', 'available', 'registry', 'task_data', 'decode_pairs', 'pair_density', 'score', 'score_task',
           'auc_items', 'spearman_items', 'Evaluation', 'evaluate_encoder', 'evaluate_heads', 'EVALUATION_PROTOCOLS',
           'HEADS', 'probe_encoder', 'probe_sequences', 'probe_residues', 'probe_pairs', 'draw_pairs', 'linear_model',
           'symmetric_apc', 'forward_features', 'split_features', 'fingerprint', 'clear_cache', 'BASELINE_CELL',
           'evaluate_baselines', 'kmer_features', 'window_features', 'pair_onehot', 'heldout_mlm_loss',
           'family_losses', 'unigram_entropy']
