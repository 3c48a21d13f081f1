"""The scoring stage: fine-tune on D_sub (Remark 1), Fisher on D_sub (Eq. 9), Eq. 11 for every pool
sequence, streamed from the FASTA in shards that are committed atomically, resumable and torchrun-aware.

Layout of the output folder:
    run.json          the run's settings (a rerun with other settings is refused)
    finetuned.pt      the model after the one-epoch fine-tune (absent with --no-finetune)
    fisher.pt         diag(F) over D_sub and its size M
    shards/shard_NNNNNN.parquet   scores of pool indices [N * shard_size, (N + 1) * shard_size)
    scores.parquet + scores.json  the merged result (DESIGN's score-file format)

Under torchrun every rank streams the FASTA; shard k is scored by rank k % world; Fisher partial sums
are all-reduced in float64, so the result equals a one-process run.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import __version__
from .config import Preset, barrier as _barrier, dist_context
from .coreset import write_scores
from .data import count_pool, full_sequence_batches, gather_tokens, mlm_batches, read_fasta, tokenize
from .errors import InputError
from .files import atomic_write, record_settings
from .influence import diagonal_fisher, resolve_damping, scope_params, self_influence
from .models import get_model, load_checkpoint, save_checkpoint
from .pretrain import finetune_config, mean_gradient_norm, train_mlm
from .sources import sha256_file

COMPAT = {"bio-coreset": {"scope": "lm_head.dense", "damping": 1e-8, "width": 1024}}


# ----------------------------------------------------------------------------- pool access
def iter_shards(fasta, modality: str, shard_size: int, n: int):
    """Yield (shard number, records) of consecutive pool indices, streaming."""
    buf, shard = [], 0
    for i, rec in enumerate(read_fasta(fasta, modality)):
        if i >= n:
            break
        buf.append(rec)
        if len(buf) == shard_size:
            yield shard, buf
            buf, shard = [], shard + 1
    if buf:
        yield shard, buf


# ----------------------------------------------------------------------------- the stage
def run_scoring(fasta, modality: str, out_dir, preset: Preset, *, model: str | None = None, checkpoint=None,
                scope: str = "all", finetune: bool = True, compat: str | None = None,
                batch_size: int | None = None, damping="auto", shard_size: int = 2048, device=None,
                skip_nonfinite: bool = False, progress: bool = True) -> Path:
    """Score every sequence of `fasta` by self-influence (Eq. 11); returns the path of scores.parquet."""
    fasta, out_dir = Path(fasta).resolve(), Path(out_dir)
    if compat is not None and compat not in COMPAT:
        raise InputError(f"unknown compat mode {compat!r}; known: {', '.join(COMPAT)}")
    if compat:
        scope, damping, finetune = COMPAT[compat]["scope"], COMPAT[compat]["damping"], False
    rank, world, device = dist_context(device)
    batch_size = batch_size or preset.batch_size
    settings = {"fasta": str(fasta), "modality": modality, "model": model or preset.model,
                "checkpoint": str(checkpoint) if checkpoint else None, "scope": scope, "finetune": finetune,
                "compat": compat, "damping": damping, "seed": preset.seed, "subset_size": preset.subset_size,
                "max_tokens": preset.max_tokens, "mask_prob": preset.mask_prob, "pool_limit": preset.pool_limit,
                "batch_size": batch_size, "shard_size": shard_size, "world_size": world}
    _check_run(out_dir, settings, rank, world)

    n = count_pool(fasta, modality, preset.pool_limit)
    net = get_model(modality, settings["model"], checkpoint, seed=preset.seed)
    if compat is None:
        scope_params(net, scope)  # a bad scope fails before any work
    net.to(device)
    vocab = net.vocab
    rng = np.random.default_rng(preset.seed)
    sub_idx = np.sort(rng.choice(n, size=min(preset.subset_size, n), replace=False))
    sub_tokens = gather_tokens(fasta, modality, sub_idx, preset.max_tokens) if compat is None else None
    extra = {}

    def sub_batches():
        return mlm_batches(sub_tokens, sub_idx, batch_size, vocab, mask_seed=preset.seed, mask_prob=preset.mask_prob)

    # --- fine-tune on D_sub (Remark 1, A.5): rank 0 trains, the others load its result
    ft_path = out_dir / "finetuned.pt"
    if finetune:
        if not ft_path.exists():
            if rank == 0:
                extra["grad_norm_before_ft"] = mean_gradient_norm(net, sub_batches(), device)
                history = train_mlm(net, sub_tokens, sub_idx, finetune_config(preset), device,
                                    out_dir=out_dir / "finetune", progress=progress, desc="fine-tune D_sub")
                history.to_csv(out_dir / "finetune_history.csv", index=False)
                save_checkpoint(net, ft_path, grad_norm_before_ft=extra["grad_norm_before_ft"])
            _barrier(world)
        saved = torch.load(ft_path, map_location="cpu", weights_only=True)
        extra["grad_norm_before_ft"] = saved.get("grad_norm_before_ft")
        net = load_checkpoint(ft_path, modality).to(device)

    # --- diagonal Fisher (Eq. 9): over D_sub, or over the scored pool in compat mode
    fisher_path = out_dir / "fisher.pt"
    if fisher_path.exists():
        saved = torch.load(fisher_path, map_location="cpu", weights_only=True)
        fisher, m_count = saved["fisher"], saved["count"]
        if saved.get("grad_norm_subset") is not None:
            extra["grad_norm_subset"] = saved["grad_norm_subset"]
    else:
        if compat:
            all_idx = np.arange(n)
            batches = full_sequence_batches(gather_tokens(fasta, modality, all_idx, COMPAT[compat]["width"]),
                                            all_idx, batch_size, vocab, COMPAT[compat]["width"])
        else:
            batches = sub_batches()
        mine = (b for j, b in enumerate(batches) if j % world == rank)
        bar = tqdm(desc="Fisher", unit="seq", disable=not progress or rank != 0, leave=False)
        fisher, m_count = _fisher_all_reduce(net, mine, scope, device, world, bar)
        bar.close()
        if rank == 0:
            if compat is None:  # Assumption 1 check: the mean D_sub gradient of the model that is scored
                extra["grad_norm_subset"] = mean_gradient_norm(net, sub_batches(), device)
            saved = {"fisher": fisher, "count": m_count, "scope": scope,
                     "grad_norm_subset": extra.get("grad_norm_subset")}
            atomic_write(fisher_path, lambda tmp: torch.save(saved, tmp))
        _barrier(world)
    fisher = {k: v.to(device) for k, v in fisher.items()}

    # --- Eq. 11 for every pool sequence, shard by shard
    shard_dir = out_dir / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    bar = tqdm(total=n, desc=f"scoring (rank {rank})" if world > 1 else "scoring", unit="seq",
               disable=not progress or rank != 0)
    for shard, records in iter_shards(fasta, modality, shard_size, n):
        path = shard_dir / f"shard_{shard:06d}.parquet"
        if shard % world != rank or path.exists():
            bar.update(len(records))
            continue
        frame, bad = _score_shard(net, records, shard * shard_size, modality, preset, fisher, damping, scope,
                                  batch_size, compat, device, bar)
        if bad and not skip_nonfinite:
            done = len(list(shard_dir.glob("shard_*.parquet")))
            raise InputError(f"sequence {bad[0]!r} gave a non-finite gradient; {done} finished shard(s) are kept "
                             f"in {shard_dir}; rerun with --skip-nonfinite to leave it out")
        skipped += bad
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    bar.close()
    _barrier(world)
    if rank == 0:
        scores = pd.concat([pd.read_parquet(p) for p in sorted(shard_dir.glob("shard_*.parquet"))], ignore_index=True)
        meta = {**settings, **extra, "n_pool": n, "n_scored": int(len(scores)),
                "skipped_nonfinite": sorted(set(skipped) | _previous_skips(out_dir)),
                "damping_value": resolve_damping(fisher, damping), "fisher_count": m_count,
                "fisher_sha256": sha256_file(fisher_path), "fasta_sha256": sha256_file(fasta),
                "sign": "negated (official bio-coreset): lower = more influential" if compat
                else "score = g^T (diag F + lambda)^-1 g, higher = more influential",
                "corelib_version": __version__, "model_spec": net.spec}
        write_scores(scores, meta, out_dir)
    _barrier(world)
    return out_dir / "scores.parquet"


def _previous_skips(out_dir: Path) -> set:
    meta = out_dir / "scores.json"
    return set(json.loads(meta.read_text()).get("skipped_nonfinite", [])) if meta.exists() else set()


def _check_run(out_dir: Path, settings: dict, rank: int, world: int):
    """A folder holds one run: resuming with other settings would mix incompatible scores."""
    diff = record_settings(out_dir / "run.json", settings, ignore=("world_size",), write=rank == 0)
    if diff:
        raise InputError(f"{out_dir}: holds a run with other settings ({', '.join(diff)}); "
                         f"use another --out or delete it")
    _barrier(world)


def _fisher_all_reduce(net, batches, scope, device, world, bar):
    fisher, count = diagonal_fisher(net, batches, scope, device, progress=bar, allow_empty=world > 1)
    if world > 1:
        sums = {k: v.double() * count for k, v in fisher.items()}
        total = torch.tensor([count], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(total)
        for v in sums.values():
            torch.distributed.all_reduce(v)
        count = int(total.item())
        fisher = {k: (v / count).float() for k, v in sums.items()}
    return {k: v.cpu() for k, v in fisher.items()}, count


def _score_shard(net, records, offset, modality, preset, fisher, damping, scope, batch_size, compat, device, bar):
    idx = np.arange(offset, offset + len(records))
    if compat:
        toks = tokenize([r.seq for r in records], modality, COMPAT[compat]["width"])
        batches = full_sequence_batches(toks, idx, batch_size, net.vocab, COMPAT[compat]["width"])
    else:
        toks = tokenize([r.seq for r in records], modality, preset.max_tokens)
        batches = mlm_batches(toks, idx, batch_size, net.vocab, mask_seed=preset.seed, mask_prob=preset.mask_prob)
    rows = []
    for b_idx, scores, losses, groups in self_influence(net, batches, fisher, damping, scope, device, progress=bar):
        for j, i in enumerate(b_idx):
            row = {"index": int(i), "score": -scores[j] if compat else scores[j], "loss": losses[j]}
            row.update({f"score_{g}": v[j] for g, v in groups.items()})
            rows.append(row)
    frame = pd.DataFrame(rows).sort_values("index", ignore_index=True)
    frame.insert(0, "id", [records[i - offset].id for i in frame["index"]])
    frame.insert(2, "length", [len(records[i - offset].seq) for i in frame["index"]])
    finite = np.isfinite(frame["score"].to_numpy()) & np.isfinite(frame["loss"].to_numpy())
    return frame[finite].reset_index(drop=True), frame.loc[~finite, "id"].tolist()


def ensure_scores(preset: Preset, modality: str, finetune: bool = True, scope: str = "all", checkpoint=None,
                  device=None, progress: bool = True) -> Path:
    """Scores of a preset's pool under runs/<preset>/scores/<modality>_{ft,noft}/, computed once (with the
    reference model pretrained on the pool unless `checkpoint` is given) and then reused; returns the folder."""
    from .config import run_dir
    from .pretrain import ensure_pretrained
    from .sources import dataset_path

    root = run_dir(preset.name)
    fasta = dataset_path(preset.rna_pool if modality == "rna" else preset.protein_pool)
    if checkpoint is None:
        checkpoint = ensure_pretrained(fasta, modality, root / "reference" / modality, preset, device=device,
                                       progress=progress)
    out = root / "scores" / (f"{modality}_{'ft' if finetune else 'noft'}" + ("" if scope == "all" else f"_{scope}"))
    if not (out / "scores.parquet").exists():
        run_scoring(fasta, modality, out, preset, checkpoint=checkpoint, scope=scope, finetune=finetune,
                    device=device, progress=progress)
    return out
