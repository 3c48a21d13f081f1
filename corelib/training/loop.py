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
from corelib.data.tokens import mlm_batches
from corelib.files import atomic_write
from corelib.models.loss import per_sequence_loss


def lr_factor(step: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over `warmup` steps, then 1/sqrt decay (A.3) or constant (A.5)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "inverse_sqrt":
        return math.sqrt(warmup / (step + 1)) if warmup > 0 else 1 / math.sqrt(step + 1)
    return 1.0


def train_mlm(model, tokens, indices, cfg: TrainingConfig, device="cpu", *, mask_prob: float = 0.15, seed: int = 0,
              out_dir=None, save_every: int = 0,
              progress: bool = True, desc: str = "train", rank: int = 0, world: int = 1) -> pd.DataFrame:
    """Train `model` in place with MLM; returns the history (step, epoch, loss, lr, and the global batch's
    sequences, real tokens and wall seconds, for throughput).

    Masks are keyed by (1000 * seed + 1 + epoch, pool index): new masks each epoch, and never the
    scoring masks (keyed by seed). With `out_dir`, `checkpoint.pt` is written atomically every epoch
    and every `save_every` steps, and a rerun resumes from it, skipping the batches already done.
    Under torchrun (world > 1) every global batch of `batch_size` is split across the ranks and each
    rank's loss is scaled by world / batch_size, so DDP's averaged gradient is the one-process gradient.
    """
    vocab = model.vocab
    model.to(device)
    net = model
    if world > 1:
        ids = [device.index] if getattr(device, "type", "cpu") == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    run_config = {**asdict(cfg), "mask_prob": mask_prob, "seed": seed}   # a resumed run must match all of it
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.schedule))
    state = {"epoch": 0, "batch": 0, "step": 0, "history": []}
    ckpt = Path(out_dir) / "checkpoint.pt" if out_dir else None
    if ckpt is not None and ckpt.exists():
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        if saved["config"] != run_config:
            from corelib.errors import InputError

            raise InputError(f"{ckpt}: holds a run with other settings; use another --out or delete it")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        state = saved["state"]

    def save():
        if ckpt is None or rank != 0:
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        saved = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "state": state, "config": run_config}
        atomic_write(ckpt, lambda tmp: torch.save(saved, tmp))

    n_batches = math.ceil(len(tokens) / cfg.batch_size)
    bar = tqdm(total=cfg.epochs * n_batches, initial=state["epoch"] * n_batches + state["batch"], desc=desc,
               unit="batch", disable=not progress or rank != 0, leave=False)
    model.train()
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        batches = mlm_batches(tokens, indices, cfg.batch_size, vocab, mask_seed=1000 * seed + 1 + epoch,
                              order_seed=seed + epoch, mask_prob=mask_prob)
        for b, (inputs, labels, _) in enumerate(batches):
            if b < state["batch"]:
                continue  # resumed mid-epoch: these batches were trained before the kill
            size = inputs.shape[0]
            started, n_tokens = time.perf_counter(), int((inputs != vocab.pad).sum())
            mine = slice(rank, None, world)
            if inputs[mine].shape[0] == 0:  # fewer sequences than ranks: join the all-reduce with zero weight
                mine, weight = slice(0, 1), 0.0
            else:
                weight = world / size
            inputs, labels = inputs[mine].to(device), labels[mine].to(device)
            losses = per_sequence_loss(net(inputs), labels)
            loss = losses.sum() * weight
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total = losses.detach().sum() * (weight > 0)
            if world > 1:
                torch.distributed.all_reduce(total)
            loss = total / size
            state["history"].append({"step": state["step"], "epoch": epoch, "loss": float(loss),
                                     "lr": opt.param_groups[0]["lr"], "sequences": size, "tokens": n_tokens,
                                     "seconds": time.perf_counter() - started})
            state["step"] += 1
            state["batch"] = b + 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.3f}")
            if save_every and state["step"] % save_every == 0:
                save()
        state["epoch"] += 1
        state["batch"] = 0
        save()
    bar.close()
    model.eval()
    return pd.DataFrame(state["history"], columns=["step", "epoch", "loss", "lr", "sequences", "tokens", "seconds"])


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
