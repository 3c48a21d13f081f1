"""The masked-LM training loop (A.3-A.5): AdamW, warm-up then inverse square-root or constant lr,
atomic checkpoints every epoch (and every `save_every` steps), resumable after kill -9.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from corelib.config import TrainingConfig
from corelib.data.tokens import length_batches, mlm_batches
from corelib.errors import InputError
from corelib.files import read_intermediate
from corelib.models.families import torch_load, torch_save
from corelib.models.loss import per_sequence_loss
from corelib.runtime import autocast

LATER_KNOBS = ("warmup_fraction", "max_steps", "max_tokens_per_batch")   # fields newer than some checkpoints


def total_steps(cfg: TrainingConfig, n_sequences: int, lengths=None, seed: int = 0) -> int:
    """Optimiser steps of a run (A.3): epochs x batches per epoch, capped at `max_steps`. Under a token budget
    (`max_tokens_per_batch`) the batches of each epoch are counted from the token `lengths` and the epoch's
    order seed, as `train_mlm` cuts them; without lengths, batch_size sequences per step is the estimate."""
    if cfg.max_tokens_per_batch is not None and lengths is not None:
        steps = sum(len(length_batches(lengths, cfg.batch_size, seed=seed + e, max_tokens=cfg.max_tokens_per_batch))
                    for e in range(cfg.epochs))
    else:
        steps = cfg.epochs * math.ceil(n_sequences / cfg.batch_size)
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def warmup_steps(cfg: TrainingConfig, n_sequences: int, lengths=None, seed: int = 0) -> int:
    """Warm-up steps (A.3): `warmup_fraction` of the run when set (at least 1 unless 0), else `warmup_steps`."""
    if cfg.warmup_fraction is None:
        return cfg.warmup_steps
    return max(int(cfg.warmup_fraction > 0), round(cfg.warmup_fraction * total_steps(cfg, n_sequences, lengths, seed)))


def lr_factor(step: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over `warmup` steps, then 1/sqrt decay (A.3) or constant (A.5)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "inverse_sqrt":
        return math.sqrt(warmup / (step + 1)) if warmup > 0 else 1 / math.sqrt(step + 1)
    return 1.0


class Checkpointer:
    """checkpoint.pt of a training run (A.3-A.5): model, optimizer, scheduler, loop state and the run's
    settings, written atomically by rank 0 every epoch and every `save_every` steps; a rerun resumes from it, and
    a damaged one is one warning line and the run starts over (the same seeds give the same run)."""

    def __init__(self, out_dir, config: dict, model, opt, sched, *, save_every: int = 0, rank: int = 0):
        self.path = Path(out_dir) / "checkpoint.pt" if out_dir else None
        self.config, self.model, self.opt, self.sched = config, model, opt, sched
        self.save_every, self.rank = save_every, rank

    def resume(self) -> dict:
        """The loop state {epoch, batch, step, history}: fresh, or restored with the weights from checkpoint.pt (A.3)."""
        saved = None if self.path is None else read_intermediate(self.path, _read_checkpoint, owner=self.rank == 0)
        if saved is None:
            return {"epoch": 0, "batch": 0, "step": 0, "history": []}
        if saved["config"] != self.config:
            raise InputError(f"{self.path}: holds a run with other settings; use another --out or delete it")
        try:
            self.model.load_state_dict(saved["model"])
            self.opt.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError):
            raise InputError(f"{self.path}: holds a run of another model; use another --out or delete it") from None
        self.sched.load_state_dict(saved["scheduler"])
        return saved["state"]

    def save(self, state: dict) -> None:
        """Write checkpoint.pt atomically (rank 0; nothing without an out_dir) (A.3)."""
        if self.path is None or self.rank != 0:
            return
        saved = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                 "scheduler": self.sched.state_dict(), "state": state, "config": self.config}
        torch_save(saved, self.path)

    def step_done(self, state: dict) -> None:
        """Save when the step count reaches a multiple of `save_every` (A.3)."""
        if self.save_every and state["step"] % self.save_every == 0:
            self.save(state)


def _read_checkpoint(path: Path) -> dict:
    """checkpoint.pt, or an InputError when it is damaged (unreadable, or without the loop's fields)."""
    saved = torch_load(path)
    if not isinstance(saved, dict) or {"model", "optimizer", "scheduler", "state", "config"} - set(saved):
        raise InputError(f"{path}: not a training checkpoint (missing fields)")
    return saved


def train_mlm(model, tokens, indices, cfg: TrainingConfig, device="cpu", *, mask_prob: float = 0.15, seed: int = 0,
              out_dir=None, save_every: int = 0, precision: str = "fp32", crop: int | None = None,
              progress: bool = True, desc: str = "train", rank: int = 0, world: int = 1) -> pd.DataFrame:
    """Train `model` in place with MLM (A.3-A.5); returns the history (step, epoch, loss, lr, and the global
    batch's sequences, real tokens and wall seconds, for throughput).

    The run lasts `total_steps` (epochs, or `max_steps` when that is fewer); warm-up is `warmup_steps`.
    Masks are keyed by (1000 * seed + 1 + epoch, pool index): new masks each epoch, and never the
    scoring masks (keyed by seed). With `crop`, each longer sequence is cut to a random window of that many
    tokens, a new window each epoch (keyed like the masks), as ESM-style pretraining reads long sequences. With `out_dir`, `checkpoint.pt` is written atomically every epoch
    and every `save_every` steps, and a rerun resumes from it, skipping the batches already done.
    Under torchrun (world > 1) every global batch of `batch_size` is split across the ranks and each
    rank's loss is scaled by world / batch_size, so DDP's averaged gradient is the one-process gradient.
    """
    model.to(device)
    net = _parallel(model, device, world)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lengths = [min(len(t), crop or len(t)) for t in tokens] if cfg.max_tokens_per_batch is not None else None
    warmup, last = warmup_steps(cfg, len(tokens), lengths, seed), total_steps(cfg, len(tokens), lengths, seed)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, cfg.schedule))
    # a resumed run must match all of it; knobs added later are left out while unset, so older checkpoints resume
    run_config = {**{k: v for k, v in asdict(cfg).items() if v is not None or k not in LATER_KNOBS},
                  "mask_prob": mask_prob, "seed": seed, **({"crop": crop} if crop is not None else {})}
    ckpt = Checkpointer(out_dir, run_config, model, opt, sched, save_every=save_every, rank=rank)
    state = ckpt.resume()
    bar = tqdm(total=last, initial=state["step"], desc=desc,
               unit="batch", disable=not progress or rank != 0, leave=False)
    model.train()
    while state["epoch"] < cfg.epochs and state["step"] < last:
        epoch = state["epoch"]
        batches = mlm_batches(tokens, indices, cfg.batch_size, model.vocab, mask_seed=1000 * seed + 1 + epoch,
                              order_seed=seed + epoch, mask_prob=mask_prob, crop=crop,
                              max_tokens_per_batch=cfg.max_tokens_per_batch)
        for b, (inputs, labels, _) in enumerate(batches):
            if b < state["batch"]:
                continue  # resumed mid-epoch: these batches were trained before the kill
            if state["step"] >= last:
                break     # max_steps reached mid-epoch (a compute-matched arm)
            row = train_step(net, opt, sched, inputs, labels, model.vocab.pad, device, rank=rank, world=world,
                             precision=precision)
            state["history"].append({"step": state["step"], "epoch": epoch, **row})
            state["step"] += 1
            state["batch"] = b + 1
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            ckpt.step_done(state)
        state["epoch"] += 1
        state["batch"] = 0
        ckpt.save(state)
    bar.close()
    model.eval()
    return pd.DataFrame(state["history"], columns=["step", "epoch", "loss", "lr", "sequences", "tokens", "seconds"])


def _parallel(model, device, world: int):
    """The module the loop calls: DDP around `model` under torchrun, else `model` itself."""
    if world == 1:
        return model
    ids = [device.index] if getattr(device, "type", "cpu") == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def train_step(net, opt, sched, inputs, labels, pad: int, device, *, rank: int = 0, world: int = 1,
               precision: str = "fp32") -> dict:
    """One AdamW step on this rank's share of a global batch (A.3); returns the history fields of the global
    batch: mean loss, lr, sequences, real (non-`pad`) tokens and wall seconds."""
    size = inputs.shape[0]
    started, n_tokens = time.perf_counter(), int((inputs != pad).sum())
    mine = slice(rank, None, world)
    if inputs[mine].shape[0] == 0:  # fewer sequences than ranks: join the all-reduce with zero weight
        mine, weight = slice(0, 1), 0.0
    else:
        weight = world / size
    inputs, labels = inputs[mine].to(device), labels[mine].to(device)
    with autocast(device, precision):
        logits = net(inputs)
    losses = per_sequence_loss(logits, labels)   # in fp32 whatever the forward's precision
    loss = losses.sum() * weight
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    total = losses.detach().sum() * (weight > 0)
    if world > 1:
        torch.distributed.all_reduce(total)
    loss = float(total / size)
    return {"loss": loss, "lr": opt.param_groups[0]["lr"], "sequences": size, "tokens": n_tokens,
            "seconds": time.perf_counter() - started}


def mean_gradient_norm(model, batches, device="cpu") -> float:
    """||(1/M) sum_m grad l(z_m)|| over a subset: ~0 when Assumption 1 (the model minimises the subset
    risk) holds; measured before and after the fine-tune."""
    model.to(device).eval()
    model.zero_grad(set_to_none=True)
    count = 0
    for inputs, labels, idx in batches:
        per_sequence_loss(model(inputs.to(device)), labels.to(device)).sum().backward()
        count += len(idx)
    total = sum(float(p.grad.double().square().sum()) for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)
    return math.sqrt(total) / max(count, 1)
