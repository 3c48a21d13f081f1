"""Training stages: the one-epoch subset fine-tune (Remark 1, A.5) and pretraining from scratch on a pool
or a coreset (A.3/A.4).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from corelib.data.store import pool_size, token_store
from corelib.training.loop import train_mlm


def pretrain_pool(fasta, modality: str, out_dir, preset, model: str | None = None, indices=None,
                  epochs: int | None = None, steps: int | None = None, device=None, save_every: int = 200,
                  progress: bool = True):
    """Pretrain a fresh model from scratch on a pool (or on the pool indices of a coreset) and save
    `model.pt` and `history.csv` in `out_dir` (resumable through `checkpoint.pt`) (A.3/A.4); a sequence longer
    than `data.max_tokens` is read through a random window of it, a new one each epoch. `epochs` replaces
    the preset's; `steps` trains exactly that many optimiser steps (a compute-matched arm). Returns the model."""
    from corelib.models.checkpoints import save_checkpoint
    from corelib.models.masked_lm import build_model
    from corelib.runtime import barrier, dist_context

    rank, world, device = dist_context(device)
    out_dir = Path(out_dir)
    store = token_store(fasta, modality, progress=progress and rank == 0)   # the pool, parsed once
    n = pool_size(store, preset.data.pool_limit)
    idx = np.arange(n) if indices is None else np.sort(np.asarray(indices, dtype=np.int64))
    if idx.size == 0 or idx.max() >= n:
        from corelib.errors import InputError

        raise InputError(f"{fasta}: coreset indices reach {idx.max() if idx.size else 'nothing'}, pool has {n}")
    tokens = store.gather(idx)   # whole sequences: each epoch reads a new random window of max_tokens (A.5)
    net = build_model(modality, model or preset.model, seed=preset.seed)
    schedule = dataclasses.replace(preset.pretrain, epochs=epochs) if epochs else preset.pretrain  # A.3 / A.4
    if steps:
        per_epoch = -(-len(tokens) // schedule.batch_size)
        schedule = dataclasses.replace(schedule, epochs=-(-steps // per_epoch), max_steps=steps)
    history = train_mlm(net, tokens, idx, schedule, device, mask_prob=preset.data.mask_prob, seed=preset.seed,
                        precision=preset.precision, out_dir=out_dir, crop=preset.data.max_tokens,
                        save_every=save_every, progress=progress, desc=f"pretrain {modality}", rank=rank, world=world)
    if rank == 0:
        history.to_csv(out_dir / "history.csv", index=False)
        save_checkpoint(net, out_dir / "model.pt", sequences=int(idx.size), world_size=world)
    barrier(world)
    return net


def ensure_pretrained(fasta, modality: str, out_dir, preset, model: str | None = None, indices=None,
                      epochs: int | None = None, device=None, progress: bool = True) -> Path:
    """A reference model (stand-in for RNA-FM / ESM-C pretrained on the pool, A.3): trained once with
    `pretrain_pool` on the pool (or its `indices`) for `epochs` (default the preset's), then reused; returns the
    path of its model.pt."""
    path = Path(out_dir) / "model.pt"
    if not path.exists():
        pretrain_pool(fasta, modality, out_dir, preset, model=model, indices=indices, device=device,
                      progress=progress, epochs=epochs)
    return path
