"""Masked-LM training: the reference model, the one-epoch subset fine-tune (Remark 1, A.5) and coreset
pretraining from scratch (A.3/A.4). AdamW; inverse square-root decay after linear warm-up, or constant
after warm-up; a checkpoint every epoch (and every `save_every` steps), resumable after kill -9."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .data import count_pool, gather_tokens, mlm_batches
from .files import atomic_write
from .influence import per_sequence_loss


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule of one training run."""

    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 2000
    epochs: int = 10
    batch_size: int = 16
    schedule: str = "inverse_sqrt"   # or "constant" (after warm-up)
    mask_prob: float = 0.15
    seed: int = 0


def lr_factor(step: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over `warmup` steps, then 1/sqrt decay (A.3) or constant (A.5)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "inverse_sqrt":
        return math.sqrt(warmup / (step + 1)) if warmup > 0 else 1 / math.sqrt(step + 1)
    return 1.0


def train_mlm(model, tokens, indices, cfg: TrainConfig, device="cpu", out_dir=None, save_every: int = 0,
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
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.schedule))
    state = {"epoch": 0, "batch": 0, "step": 0, "history": []}
    ckpt = Path(out_dir) / "checkpoint.pt" if out_dir else None
    if ckpt is not None and ckpt.exists():
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        if saved["config"] != asdict(cfg):
            from .errors import InputError

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
                 "state": state, "config": asdict(cfg)}
        atomic_write(ckpt, lambda tmp: torch.save(saved, tmp))

    n_batches = math.ceil(len(tokens) / cfg.batch_size)
    bar = tqdm(total=cfg.epochs * n_batches, initial=state["epoch"] * n_batches + state["batch"], desc=desc,
               unit="batch", disable=not progress or rank != 0, leave=False)
    model.train()
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        batches = mlm_batches(tokens, indices, cfg.batch_size, vocab, mask_seed=1000 * cfg.seed + 1 + epoch,
                              order_seed=cfg.seed + epoch, mask_prob=cfg.mask_prob)
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


def finetune_config(preset) -> TrainConfig:
    """The subset fine-tune of Remark 1 / A.5 from a preset: AdamW lr 1e-5, wd 0.01, 50-step linear
    warm-up (then constant), one epoch, batch 16, 15% masking, seed 0."""
    return TrainConfig(lr=preset.ft_lr, weight_decay=preset.ft_weight_decay, warmup_steps=preset.ft_warmup_steps,
                       epochs=preset.ft_epochs, batch_size=preset.batch_size, schedule="constant",
                       mask_prob=preset.mask_prob, seed=preset.seed)


def pretrain_config(preset, epochs: int | None = None) -> TrainConfig:
    """Pretraining from scratch (A.3/A.4) from a preset: AdamW lr 1e-4, wd 0.01, inverse square-root
    decay after a 2,000-step warm-up, 10 epochs, batch 16."""
    return TrainConfig(lr=preset.pretrain_lr, weight_decay=preset.pretrain_weight_decay,
                       warmup_steps=preset.pretrain_warmup_steps, epochs=epochs or preset.pretrain_epochs,
                       batch_size=preset.batch_size, schedule="inverse_sqrt", mask_prob=preset.mask_prob,
                       seed=preset.seed)


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


def pretrain_pool(fasta, modality: str, out_dir, preset, model: str | None = None, indices=None,
                  epochs: int | None = None, device=None, save_every: int = 200, progress: bool = True):
    """Pretrain a fresh model from scratch on a pool (or on the pool indices of a coreset) and save
    `model.pt` and `history.csv` in `out_dir` (resumable through `checkpoint.pt`). Returns the model."""
    from .config import barrier, dist_context
    from .models import build_model, save_checkpoint

    rank, world, device = dist_context(device)
    out_dir = Path(out_dir)
    n = count_pool(fasta, modality, preset.pool_limit)
    idx = np.arange(n) if indices is None else np.sort(np.asarray(indices, dtype=np.int64))
    if idx.size == 0 or idx.max() >= n:
        from .errors import InputError

        raise InputError(f"{fasta}: coreset indices reach {idx.max() if idx.size else 'nothing'}, pool has {n}")
    tokens = gather_tokens(fasta, modality, idx, preset.max_tokens)
    net = build_model(modality, model or preset.model, seed=preset.seed)
    history = train_mlm(net, tokens, idx, pretrain_config(preset, epochs), device, out_dir=out_dir,
                        save_every=save_every, progress=progress, desc=f"pretrain {modality}", rank=rank, world=world)
    if rank == 0:
        history.to_csv(out_dir / "history.csv", index=False)
        save_checkpoint(net, out_dir / "model.pt", sequences=int(idx.size), world_size=world)
    barrier(world)
    return net


def ensure_pretrained(fasta, modality: str, out_dir, preset, model: str | None = None, device=None,
                      progress: bool = True) -> Path:
    """The reference model (stand-in for RNA-FM / ESM-C pretrained on the whole pool): trained once
    with `pretrain_pool`, then reused; returns the path of model.pt."""
    path = Path(out_dir) / "model.pt"
    if not path.exists():
        pretrain_pool(fasta, modality, out_dir, preset, model=model, device=device, progress=progress)
    return path
