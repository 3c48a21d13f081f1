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

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from corelib import __version__
from corelib.config import Preset
from corelib.data.store import TokenStore, pool_size, token_store
from corelib.data.tokens import full_sequence_batches, masked_count, mlm_batches
from corelib.errors import InputError
from corelib.files import atomic_write, record_settings, sha256_file
from corelib.influence.fisher import diagonal_fisher, resolve_damping, self_influence
from corelib.influence.hooks import scope_params
from corelib.models.checkpoints import get_model, load_checkpoint, save_checkpoint
from corelib.models.masked_lm import MaskedLM
from corelib.runtime import barrier as _barrier
from corelib.runtime import dist_context, resolve_precision
from corelib.selection.files import write_scores
from corelib.training.loop import mean_gradient_norm, train_mlm

COMPAT = {"bio-coreset": {"scope": "lm_head.dense", "damping": 1e-8, "width": 1024}}


# ----------------------------------------------------------------------------- pool access
def iter_shards(n: int, shard_size: int):
    """Yield (shard number, pool indices) of consecutive shards covering [0, n)."""
    for shard, start in enumerate(range(0, n, shard_size)):
        yield shard, np.arange(start, min(start + shard_size, n))


# ----------------------------------------------------------------------------- the stage
@dataclass
class ScoringRun:
    """One scoring run's resolved settings and shared state, handed from step to step (Sec. 3.2)."""

    fasta: Path
    modality: str
    out_dir: Path
    preset: Preset
    settings: dict       # what run.json records (a resumed run must match it)
    rank: int
    world: int
    device: torch.device
    progress: bool
    skip_nonfinite: bool
    n: int = 0           # pool size
    store: TokenStore | None = None      # the pool, tokenized once (corelib.data.store)
    net: MaskedLM | None = None
    sub_idx: np.ndarray | None = None    # D_sub, sorted pool indices
    sub_tokens: list | None = None       # their tokens (None in compat mode, which has no D_sub)
    extra: dict = field(default_factory=dict)   # gradient-norm checks for scores.json

    # the recorded settings the steps read
    scope = property(lambda self: self.settings["scope"])
    damping = property(lambda self: self.settings["damping"])
    compat = property(lambda self: self.settings["compat"])
    finetune = property(lambda self: self.settings["finetune"])
    batch_size = property(lambda self: self.settings["batch_size"])
    shard_size = property(lambda self: self.settings["shard_size"])
    precision = property(lambda self: self.settings.get("precision", "fp32"))
    reduction = property(lambda self: self.settings.get("reduction", "mean"))
    mask_draws = property(lambda self: self.settings.get("mask_draws", 1))
    max_tokens_per_batch = property(lambda self: self.settings.get("max_tokens_per_batch"))

    def sub_batches(self):
        """Masked D_sub batches, masks keyed by the seed (the scoring masks, Sec. 3.2)."""
        return mlm_batches(self.sub_tokens, self.sub_idx, self.batch_size, self.net.vocab, mask_seed=self.preset.seed,
                           mask_prob=self.preset.data.mask_prob, max_tokens_per_batch=self.max_tokens_per_batch)


def run_scoring(fasta, modality: str, out_dir, preset: Preset, *, model: str | None = None, checkpoint=None,
                scope: str | None = None, finetune: bool = True, compat: str | None = None,
                batch_size: int | None = None, damping=None, shard_size: int | None = None, device=None,
                skip_nonfinite: bool = False, progress: bool = True, exclude=None) -> Path:
    """Score every sequence of `fasta` by self-influence (Eq. 11); returns the path of scores.parquet.
    Scope, batch size, damping and shard size default to `preset.scoring`; `exclude`: pool indices D_sub
    never draws (a held-out set that nothing may train on)."""
    run = prepare_run(fasta, modality, out_dir, preset, model=model, checkpoint=checkpoint, scope=scope,
                      finetune=finetune, compat=compat, batch_size=batch_size, damping=damping,
                      shard_size=shard_size, device=device, skip_nonfinite=skip_nonfinite, progress=progress,
                      exclude=exclude)
    if run.finetune:
        finetune_on_subset(run)
    fisher, m_count = estimate_fisher(run)
    skipped = score_shards(run, fisher)
    return merge_shards(run, fisher, m_count, skipped)


def resolve_settings(fasta: Path, modality: str, preset: Preset, *, model, checkpoint, scope, finetune, compat,
                     batch_size, damping, shard_size) -> dict:
    """The run's settings for run.json (world_size is added by `prepare_run`): arguments over
    `preset.scoring`, or compat mode's fixed recipe (Sec. 3.2)."""
    scope = scope or preset.scoring.scope
    damping = preset.scoring.damping if damping is None else damping
    shard_size = shard_size or preset.scoring.shard_size
    if compat is not None and compat not in COMPAT:
        raise InputError(f"unknown compat mode {compat!r}; known: {', '.join(COMPAT)}")
    if compat:
        scope, damping, finetune = COMPAT[compat]["scope"], COMPAT[compat]["damping"], False
    batch_size = batch_size or preset.scoring.batch_size
    settings = {"fasta": str(fasta), "modality": modality, "model": model or preset.model,
                "checkpoint": str(checkpoint) if checkpoint else None, "scope": scope, "finetune": finetune,
                "compat": compat, "damping": damping, "seed": preset.seed, "subset_size": preset.scoring.subset_size,
                "max_tokens": preset.data.max_tokens, "mask_prob": preset.data.mask_prob,
                "pool_limit": preset.data.pool_limit, "batch_size": batch_size, "shard_size": shard_size}
    # score variants (recorded only when not the default, so earlier run folders stay resumable)
    variants = {"mask_draws": 1 if compat else preset.scoring.mask_draws,
                "reduction": "mean" if compat else preset.scoring.reduction, "precision": preset.precision,
                "max_tokens_per_batch": preset.scoring.max_tokens_per_batch}
    settings.update({k: v for k, v in variants.items() if v != {"mask_draws": 1, "reduction": "mean",
                                                                  "precision": "fp32", "max_tokens_per_batch": None}[k]})
    return settings


def prepare_run(fasta, modality: str, out_dir, preset: Preset, *, model=None, checkpoint=None, scope=None,
                finetune: bool = True, compat=None, batch_size=None, damping=None, shard_size=None, device=None,
                skip_nonfinite: bool = False, progress: bool = True, exclude=None) -> ScoringRun:
    """Check the run folder, load the model and draw D_sub, the Fisher subset of Eq. 9 (Sec. 3.2)."""
    fasta, out_dir = Path(fasta).resolve(), Path(out_dir)
    settings = resolve_settings(fasta, modality, preset, model=model, checkpoint=checkpoint, scope=scope,
                                finetune=finetune, compat=compat, batch_size=batch_size, damping=damping,
                                shard_size=shard_size)
    if exclude is not None and len(exclude):   # a rerun with another exclusion is refused, like any setting
        ex = np.unique(np.asarray(exclude, dtype=np.int64))
        settings.update({"excluded": int(ex.size), "excluded_sha256": hashlib.sha256(ex.tobytes()).hexdigest()})
    rank, world, device = dist_context(device)
    precision = resolve_precision(settings.pop("precision", "fp32"), device)   # "auto": bf16 on CUDA, fp32 on CPU
    if precision != "fp32":
        settings["precision"] = precision
    settings["world_size"] = world
    _check_run(out_dir, settings, rank, world)
    run = ScoringRun(fasta, modality, out_dir, preset, settings, rank, world, device, progress, skip_nonfinite)
    run.store = token_store(fasta, modality, progress=progress and rank == 0)
    run.n = pool_size(run.store, preset.data.pool_limit)
    run.net = get_model(modality, settings["model"], checkpoint, seed=preset.seed)
    run.net.attend_padding = bool(compat)  # the official model file passes no key padding mask
    if compat is None:
        scope_params(run.net, run.scope)  # a bad scope fails before any work
    run.net.to(device)
    rng = np.random.default_rng(preset.seed)
    if exclude is None or len(exclude) == 0:
        run.sub_idx = np.sort(rng.choice(run.n, size=min(preset.scoring.subset_size, run.n), replace=False))
    else:   # D_sub from the pool minus the excluded indices (recorded in run.json)
        allowed = np.setdiff1d(np.arange(run.n), np.asarray(exclude, dtype=np.int64))
        run.sub_idx = np.sort(rng.choice(allowed, size=min(preset.scoring.subset_size, allowed.size), replace=False))
    if compat is None:
        run.sub_tokens = run.store.gather(run.sub_idx, preset.data.max_tokens)
    return run


def finetune_on_subset(run: ScoringRun) -> None:
    """One epoch of MLM on D_sub (Remark 1, A.5), saved as finetuned.pt: rank 0 trains, every rank loads it."""
    ft_path = run.out_dir / "finetuned.pt"
    if not ft_path.exists():
        if run.rank == 0:
            run.extra["grad_norm_before_ft"] = mean_gradient_norm(run.net, run.sub_batches(), run.device)
            history = train_mlm(run.net, run.sub_tokens, run.sub_idx, run.preset.finetune, run.device,
                                mask_prob=run.preset.data.mask_prob, seed=run.preset.seed, precision=run.precision,
                                out_dir=run.out_dir / "finetune", progress=run.progress, desc="fine-tune D_sub")
            history.to_csv(run.out_dir / "finetune_history.csv", index=False)
            save_checkpoint(run.net, ft_path, grad_norm_before_ft=run.extra["grad_norm_before_ft"])
        _barrier(run.world)
    saved = torch.load(ft_path, map_location="cpu", weights_only=True)
    run.extra["grad_norm_before_ft"] = saved.get("grad_norm_before_ft")
    run.net = load_checkpoint(ft_path, run.modality).to(run.device)


def estimate_fisher(run: ScoringRun) -> tuple[dict, int]:
    """diag(F) (Eq. 9) over D_sub, or over the scored pool in compat mode, saved as fisher.pt (or loaded from it);
    returns ({parameter: diag F on the run's device}, M)."""
    fisher_path = run.out_dir / "fisher.pt"
    if fisher_path.exists():
        saved = torch.load(fisher_path, map_location="cpu", weights_only=True)
        if saved.get("grad_norm_subset") is not None:
            run.extra["grad_norm_subset"] = saved["grad_norm_subset"]
        return {k: v.to(run.device) for k, v in saved["fisher"].items()}, saved["count"]
    mine = (b for j, b in enumerate(_fisher_batches(run)) if j % run.world == run.rank)
    bar = tqdm(desc="Fisher", unit="seq", disable=not run.progress or run.rank != 0, leave=False)
    fisher, m_count = _fisher_all_reduce(run, mine, bar)
    bar.close()
    if run.rank == 0:
        if run.compat is None:  # Assumption 1 check: the mean D_sub gradient of the model that is scored
            run.extra["grad_norm_subset"] = mean_gradient_norm(run.net, run.sub_batches(), run.device)
        saved = {"fisher": fisher, "count": m_count, "scope": run.scope,
                 "grad_norm_subset": run.extra.get("grad_norm_subset")}
        atomic_write(fisher_path, lambda tmp: torch.save(saved, tmp))
    _barrier(run.world)
    return {k: v.to(run.device) for k, v in fisher.items()}, m_count


def _fisher_batches(run: ScoringRun):
    """D_sub's masked batches; in compat mode the whole pool, unmasked and padded to the official width."""
    if not run.compat:
        return run.sub_batches()
    width, all_idx = COMPAT[run.compat]["width"], np.arange(run.n)
    # as the official code: tokenize the whole sequence, keep its first `width` tokens (a long one has no <eos>)
    toks = [run.store.tokens(i)[:width] for i in all_idx]
    return full_sequence_batches(toks, all_idx, run.batch_size, run.net.vocab, width)


def score_shards(run: ScoringRun, fisher: dict) -> list[str]:
    """Eq. 11 for every pool sequence, shard by shard (this rank's shards, skipping finished ones), each
    committed atomically; returns the ids of sequences left out for a non-finite gradient."""
    shard_dir = run.out_dir / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    bar = tqdm(total=run.n, desc=f"scoring (rank {run.rank})" if run.world > 1 else "scoring", unit="seq",
               disable=not run.progress or run.rank != 0)
    for shard, idx in iter_shards(run.n, run.shard_size):
        path = shard_dir / f"shard_{shard:06d}.parquet"
        if shard % run.world != run.rank or path.exists():
            bar.update(len(idx))
            continue
        frame, bad = _score_shard(run, idx, fisher, bar)
        if bad and not run.skip_nonfinite:
            done = len(list(shard_dir.glob("shard_*.parquet")))
            raise InputError(f"sequence {bad[0]!r} gave a non-finite gradient; {done} finished shard(s) are kept "
                             f"in {shard_dir}; rerun with --skip-nonfinite to leave it out")
        skipped += bad
        atomic_write(path, lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
    bar.close()
    _barrier(run.world)
    return skipped


def merge_shards(run: ScoringRun, fisher: dict, m_count: int, skipped: list[str]) -> Path:
    """Rank 0 concatenates the shards into scores.parquet + scores.json (settings, checks, sign; Eq. 11)."""
    shard_dir, out_dir = run.out_dir / "shards", run.out_dir
    if run.rank == 0:
        scores = pd.concat([pd.read_parquet(p) for p in sorted(shard_dir.glob("shard_*.parquet"))], ignore_index=True)
        compat = run.compat
        meta = {**run.settings, **run.extra, "n_pool": run.n, "n_scored": int(len(scores)),
                "skipped_nonfinite": sorted(set(skipped) | _previous_skips(out_dir)),
                "damping_value": resolve_damping(fisher, run.damping), "fisher_count": m_count,
                "fisher_sha256": sha256_file(out_dir / "fisher.pt"), "fasta_sha256": sha256_file(run.fasta),
                "score_sign": -1 if compat else 1,
                "sign": "negated (official bio-coreset): lower = more influential" if compat
                else "score = g^T (diag F + lambda)^-1 g, higher = more influential",
                "corelib_version": __version__, "model_spec": run.net.spec}
        write_scores(scores, meta, out_dir)
    _barrier(run.world)
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


def _fisher_all_reduce(run: ScoringRun, batches, bar):
    device, world = run.device, run.world
    fisher, count = diagonal_fisher(run.net, batches, run.scope, device, progress=bar, allow_empty=world > 1,
                                    precision=run.precision, reduction=run.reduction)
    if world > 1:
        sums = {k: v.double() * count for k, v in fisher.items()}
        total = torch.tensor([count], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(total)
        for v in sums.values():
            torch.distributed.all_reduce(v)
        count = int(total.item())
        fisher = {k: (v / count).float() for k, v in sums.items()}
    return {k: v.cpu() for k, v in fisher.items()}, count


def _shard_batches(run: ScoringRun, idx: np.ndarray, draw: int):
    """One shard's batches: masked with mask `draw` (keyed by seed, pool index and draw), or in compat mode
    unmasked and cut at the official width."""
    if run.compat:
        width = COMPAT[run.compat]["width"]
        return full_sequence_batches([run.store.tokens(i)[:width] for i in idx], idx, run.batch_size,
                                     run.net.vocab, width)
    toks = run.store.gather(idx, run.preset.data.max_tokens)
    return mlm_batches(toks, idx, run.batch_size, run.net.vocab, mask_seed=run.preset.seed,
                       mask_prob=run.preset.data.mask_prob, draw=draw, max_tokens_per_batch=run.max_tokens_per_batch)


def _score_shard(run: ScoringRun, idx: np.ndarray, fisher: dict, bar):
    """Eq. 11 of one shard's sequences, averaged over the mask draws (per-draw scores kept as columns when
    there are several), with the masked-token count m and the per-token score m x I (I / m under a summed
    loss); returns (finite rows, ids of non-finite ones)."""
    draws = run.mask_draws
    per_draw, losses, groups = [], [], []
    for d in range(draws):
        rows = {}
        batches = _shard_batches(run, idx, d)
        for b_idx, scores, loss, grp in self_influence(run.net, batches, fisher, run.damping, run.scope, run.device,
                                                       progress=bar if d == draws - 1 else None,
                                                       precision=run.precision, reduction=run.reduction):
            for j, i in enumerate(b_idx):
                rows[int(i)] = (-scores[j] if run.compat else scores[j], loss[j], {g: v[j] for g, v in grp.items()})
        order = sorted(rows)
        per_draw.append(np.array([rows[i][0] for i in order]))
        losses.append(np.array([rows[i][1] for i in order]))
        groups.append(pd.DataFrame([rows[i][2] for i in order]))
    frame = pd.DataFrame({"index": order})
    frame.insert(0, "id", run.store.ids_of(order))
    frame.insert(2, "length", run.store.lengths_of(order))
    frame["score"] = np.mean(per_draw, axis=0)
    frame["loss"] = np.mean(losses, axis=0)
    frame = pd.concat([frame, (sum(groups) / draws).add_prefix("score_")], axis=1)
    if draws > 1:
        for d, values in enumerate(per_draw):
            frame[f"draw{d}"] = values
    width = COMPAT[run.compat]["width"] if run.compat else None
    masked = [width or masked_count(len(run.store.tokens(i, run.preset.data.max_tokens)), run.preset.data.mask_prob)
              for i in order]
    frame["masked"] = masked
    frame["token_score"] = frame["score"] / frame["masked"] if run.reduction == "sum" \
        else frame["score"] * frame["masked"]
    finite = np.isfinite(frame["score"].to_numpy()) & np.isfinite(frame["loss"].to_numpy())
    return frame[finite].reset_index(drop=True), frame.loc[~finite, "id"].tolist()


def ensure_scores(preset: Preset, modality: str, finetune: bool = True, scope: str = "all", checkpoint=None,
                  device=None, progress: bool = True) -> Path:
    """Scores of a preset's pool under runs/<preset>/scores/<modality>_{ft,noft}/, computed once (with the
    reference model pretrained on the pool unless `checkpoint` is given) and then reused; returns the folder."""
    from corelib.layout import RunLayout
    from corelib.training.pretrain import ensure_pretrained

    layout = RunLayout(preset)
    fasta = layout.pool(modality)
    if checkpoint is None:
        checkpoint = ensure_pretrained(fasta, modality, layout.reference(modality), preset, device=device,
                                       progress=progress)
    out = layout.scores(modality, finetune, scope)
    if not (out / "scores.parquet").exists():
        run_scoring(fasta, modality, out, preset, checkpoint=checkpoint, scope=scope, finetune=finetune,
                    device=device, progress=progress)
    return out
