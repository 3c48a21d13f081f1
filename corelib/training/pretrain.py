"""Training stages: the one-epoch subset fine-tune (Remark 1, A.5) and pretraining from scratch on a pool
or a coreset (A.3/A.4).

A pretraining folder (opened with `corelib.rundir.open_run`: one run at a time) holds run.json (the settings,
written once the pool, the coreset indices and the model are read; a rerun with other settings is refused),
checkpoint.pt while it trains, then history.csv and model.pt. A finished folder is read, not rewritten.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from corelib.data.store import pool_size, token_store
from corelib.errors import InputError
from corelib.files import atomic_write, read_intermediate, record_settings
from corelib.rundir import open_run
from corelib.training.loop import train_mlm


def pretrain_settings(fasta, modality: str, preset, model: str | None = None, indices=None,
                      epochs: int | None = None, steps: int | None = None) -> dict:
    """What a pretraining folder's run.json records (A.3/A.4): the pool, the coreset (its size and the sha256 of its
    sorted indices), the model, the seed and masks, and the schedule."""
    idx = None if indices is None else np.sort(np.asarray(indices, dtype=np.int64))
    schedule = dataclasses.replace(preset.pretrain, epochs=epochs) if epochs else preset.pretrain
    return {"fasta": str(Path(fasta).resolve()), "modality": modality, "model": model or preset.model,
            "seed": preset.seed, "pool_limit": preset.data.pool_limit, "max_tokens": preset.data.max_tokens,
            "mask_prob": preset.data.mask_prob, "precision": preset.precision,
            "coreset": None if idx is None else int(idx.size),
            "coreset_sha256": None if idx is None else hashlib.sha256(idx.tobytes()).hexdigest(),
            "steps": steps, **{f"pretrain.{k}": v for k, v in dataclasses.asdict(schedule).items()}}


def _finished(out_dir: Path, settings: dict, modality: str, owner: bool = False):
    """The model of a finished folder of these settings, read only (a damaged model.pt: one warning line, and the
    run saves it again from its last checkpoint), or None; a finished folder of other settings is refused."""
    from corelib.models.checkpoints import load_checkpoint

    if not (out_dir / "model.pt").exists():
        return None
    record = out_dir / "run.json"
    diff = record_settings(record, settings, write=False) if record.exists() else []   # none: an older folder
    if diff:
        raise InputError(f"{out_dir}: holds a run with other settings ({', '.join(diff)}); "
                         f"use another --out or delete it")
    return read_intermediate(out_dir / "model.pt", lambda p: load_checkpoint(p, modality), owner=owner)


def pretrain_pool(fasta, modality: str, out_dir, preset, model: str | None = None, indices=None,
                  epochs: int | None = None, steps: int | None = None, device=None, save_every: int = 200,
                  progress: bool = True, wait: bool = False):
    """Pretrain a fresh model from scratch on a pool (or on the pool indices of a coreset) and save
    `model.pt` and `history.csv` in `out_dir` (resumable through `checkpoint.pt`) (A.3/A.4); a sequence longer
    than `data.max_tokens` is read through a random window of it, a new one each epoch. `epochs` replaces
    the preset's; `steps` trains exactly that many optimiser steps (a compute-matched arm). A finished folder is
    read, not rewritten; `wait`: wait for another run holding the folder. Returns the model."""
    from corelib.models.checkpoints import save_checkpoint
    from corelib.models.masked_lm import build_model
    from corelib.runtime import barrier, dist_context

    rank, world, device = dist_context(device)
    out_dir = Path(out_dir)
    settings = pretrain_settings(fasta, modality, preset, model, indices, epochs, steps)
    done = _finished(out_dir, settings, modality)
    if done is not None:
        return done
    with open_run(out_dir, wait=wait):
        done = _finished(out_dir, settings, modality, owner=rank == 0)   # finished while this one waited?
        if done is not None:
            return done
        store = token_store(fasta, modality, progress=progress and rank == 0)   # the pool, parsed once
        n = pool_size(store, preset.data.pool_limit)
        idx = np.arange(n) if indices is None else np.sort(np.asarray(indices, dtype=np.int64))
        if idx.size == 0 or idx.max() >= n or idx.min() < 0:
            raise InputError(f"{fasta}: coreset indices reach {idx.max() if idx.size else 'nothing'}, pool has {n}")
        tokens = store.gather(idx)   # whole sequences: each epoch reads a new random window of max_tokens (A.5)
        net = build_model(modality, model or preset.model, seed=preset.seed)
        schedule = dataclasses.replace(preset.pretrain, epochs=epochs) if epochs else preset.pretrain  # A.3 / A.4
        if steps:
            per_epoch = -(-len(tokens) // schedule.batch_size)
            schedule = dataclasses.replace(schedule, epochs=-(-steps // per_epoch), max_steps=steps)
        new = _record(out_dir, settings, rank, world)
        try:
            history = train_mlm(net, tokens, idx, schedule, device, mask_prob=preset.data.mask_prob,
                                seed=preset.seed, precision=preset.precision, out_dir=out_dir,
                                crop=preset.data.max_tokens, save_every=save_every, progress=progress,
                                desc=f"pretrain {modality}", rank=rank, world=world)
            if rank == 0:
                atomic_write(out_dir / "history.csv", lambda tmp: history.to_csv(tmp, index=False))
                save_checkpoint(net, out_dir / "model.pt", sequences=int(idx.size), world_size=world)
        except BaseException:
            if new and not any((out_dir / f).exists() for f in ("checkpoint.pt", "model.pt")):
                (out_dir / "run.json").unlink(missing_ok=True)   # no work done: a corrected command is not refused
            raise
        barrier(world)
    return net


def _record(out_dir: Path, settings: dict, rank: int, world: int) -> bool:
    """Record the settings (rank 0) or refuse a folder of other settings; True when this call recorded them."""
    from corelib.runtime import barrier

    new = not (out_dir / "run.json").exists()
    diff = record_settings(out_dir / "run.json", settings, write=rank == 0)
    if diff:
        raise InputError(f"{out_dir}: holds a run with other settings ({', '.join(diff)}); "
                         f"use another --out or delete it")
    barrier(world)
    return new and rank == 0


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
