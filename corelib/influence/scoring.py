"""The scoring stage: fine-tune on D_sub (Remark 1), Fisher on D_sub (Eq. 9), Eq. 11 for every pool
sequence, streamed from the FASTA in shards that are committed atomically, resumable and torchrun-aware.

Layout of the output folder (opened with `corelib.rundir.open_run`: one run at a time):
    run.json          the run's settings (a rerun with other settings is refused), written once the inputs
                      (FASTA, checkpoint, scope) are read
    finetuned.pt      the model after the one-epoch fine-tune (absent with --no-finetune)
    fisher.pt         diag(F) over D_sub and its size M
    shards/shard_NNNNNN.parquet   scores of pool indices [N * shard_size, (N + 1) * shard_size)
    scores.parquet + scores.json  the merged result (DESIGN's score-file format)

Under torchrun every rank streams the FASTA; shard k is scored by rank k % world; Fisher partial sums
are all-reduced in float64, so the result equals a one-process run.

A finished folder (scores.parquet and scores.json beside a run.json of the same settings) is read, not rewritten.
A damaged intermediate (finetuned.pt, fisher.pt, a shard) is one warning line and is computed again.

"""
from __future__ import annotations

import dataclasses
import hashlib
import os
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
from corelib.files import atomic_write, read_intermediate, read_json, record_settings, sha256_file
from corelib.influence.fisher import diagonal_fisher, resolve_damping, self_influence
from corelib.influence.hooks import scope_params
from corelib.models.checkpoints import get_model, load_checkpoint, save_checkpoint
from corelib.models.families import torch_load, torch_save
from corelib.models.masked_lm import MaskedLM, model_name
from corelib.rundir import open_run
from corelib.runtime import barrier as _barrier
from corelib.runtime import choose_device, dist_context, resolve_precision
from corelib.selection.files import write_scores
from corelib.training.loop import mean_gradient_norm, train_mlm

COMPAT = {"bio-coreset": {"scope": "lm_head.dense", "damping": 1e-8, "width": 1024}}


# ----------------------------------------------------------------------------- pool access
def iter_shards(n: int, shard_size: int):
    """Yield (shard number, pool indices) of consecutive shards covering [0, n)."""
    for shard, start in enumerate(range(0, n, shard_size)):
        yield shard, np.arange(start, min(start + shard_size, n))


# ----------------------------------------------------------------------------- the stage
@dataclass(frozen=True)
class ScoringArguments:
    """What one scoring run computes (Section 3.2), as kronfluence's ScoreArguments: a field left None takes the
    preset's value (`preset.scoring`, `preset.model`, `preset.precision`); `resolved` fills them in. With a
    `checkpoint`, `model` left None is the checkpoint's architecture, and a `model` given must describe it.

    `exclude`: pool indices D_sub never draws (a held-out set nothing may train on); `compat`: the official
    bio-coreset recipe (scope lm_head.dense, damping 1e-8, no fine-tune, one mask draw, mean loss)."""

    model: str | None = None
    checkpoint: str | None = None
    scope: str | None = None
    finetune: bool = True
    compat: str | None = None
    damping: float | str | None = None
    batch_size: int | None = None
    shard_size: int | None = None
    mask_draws: int | None = None
    reduction: str | None = None
    precision: str | None = None
    max_tokens_per_batch: int | None = None
    skip_nonfinite: bool = False
    exclude: np.ndarray | None = field(default=None, compare=False)

    def resolved(self, preset: Preset, device=None) -> ScoringArguments:
        """Every None replaced by the preset's value, or by compat mode's fixed recipe (Section 3.2); precision
        "auto" resolved for `device` (bf16 on CUDA, fp32 elsewhere; `corelib.runtime.resolve_precision`)."""
        if self.compat is not None and self.compat not in COMPAT:
            raise InputError(f"unknown compat mode {self.compat!r}; known: {', '.join(COMPAT)}")
        sc = preset.scoring
        pick = lambda value, default: default if value is None else value  # noqa: E731
        out = dataclasses.replace(
            self, model=self.model if self.checkpoint else pick(self.model, preset.model), scope=pick(self.scope, sc.scope),
            damping=pick(self.damping, sc.damping), batch_size=pick(self.batch_size, sc.batch_size),
            shard_size=pick(self.shard_size, sc.shard_size), mask_draws=pick(self.mask_draws, sc.mask_draws),
            reduction=pick(self.reduction, sc.reduction), precision=pick(self.precision, preset.precision),
            max_tokens_per_batch=pick(self.max_tokens_per_batch, sc.max_tokens_per_batch),
            checkpoint=str(self.checkpoint) if self.checkpoint else None,
            exclude=None if self.exclude is None or not len(self.exclude)
            else np.unique(np.asarray(self.exclude, dtype=np.int64)))
        if self.compat:
            recipe = COMPAT[self.compat]
            out = dataclasses.replace(out, scope=recipe["scope"], damping=recipe["damping"], finetune=False,
                                      mask_draws=1, reduction="mean")
        return dataclasses.replace(out, precision=resolve_precision(out.precision, device or "cpu"))

    def record(self, fasta: Path, modality: str, preset: Preset) -> dict:
        """The settings run.json records for a resolved run (a resumed run must match them; Section 3.2). Score
        variants are recorded only when not the default, so earlier run folders stay resumable."""
        settings = {"fasta": str(fasta), "modality": modality, "model": self.model, "checkpoint": self.checkpoint,
                    "scope": self.scope, "finetune": self.finetune, "compat": self.compat, "damping": self.damping,
                    "seed": preset.seed, "subset_size": preset.scoring.subset_size,
                    "max_tokens": preset.data.max_tokens, "mask_prob": preset.data.mask_prob,
                    "pool_limit": preset.data.pool_limit, "batch_size": self.batch_size, "shard_size": self.shard_size}
        variants = {"mask_draws": (self.mask_draws, 1), "reduction": (self.reduction, "mean"),
                    "precision": (self.precision, "fp32"), "max_tokens_per_batch": (self.max_tokens_per_batch, None)}
        settings.update({k: v for k, (v, default) in variants.items() if v != default})
        if self.exclude is not None:   # a rerun with another exclusion is refused, like any setting
            settings.update({"excluded": int(self.exclude.size),
                             "excluded_sha256": hashlib.sha256(self.exclude.tobytes()).hexdigest()})
        return settings


@dataclass
class ScoringRun:
    """One scoring run's resolved arguments and shared state, handed from step to step (Sec. 3.2)."""

    fasta: Path
    modality: str
    out_dir: Path
    preset: Preset
    args: ScoringArguments   # resolved: no None left
    settings: dict           # what run.json records (a resumed run must match it)
    rank: int
    world: int
    device: torch.device
    progress: bool
    n: int = 0           # pool size
    store: TokenStore | None = None      # the pool, tokenized once (corelib.data.store)
    net: MaskedLM | None = None
    sub_idx: np.ndarray | None = None    # D_sub, sorted pool indices
    sub_tokens: list | None = None       # their tokens (None in compat mode, which has no D_sub)
    extra: dict = field(default_factory=dict)   # gradient-norm checks for scores.json
    extra_record: bool = False   # run.json was written by this run (removed if it fails before any work)

    def sub_batches(self):
        """Masked D_sub batches, masks keyed by the seed (the scoring masks, Sec. 3.2)."""
        return mlm_batches(self.sub_tokens, self.sub_idx, self.args.batch_size, self.net.vocab,
                           mask_seed=self.preset.seed, mask_prob=self.preset.data.mask_prob,
                           max_tokens_per_batch=self.args.max_tokens_per_batch)


def run_scoring(fasta, modality: str, out_dir, preset: Preset, args: ScoringArguments | None = None, *,
                device=None, progress: bool = True, wait: bool = False, **fields) -> Path:
    """Score every sequence of `fasta` by self-influence (Eq. 11); returns the path of scores.parquet. `args`
    (or its fields given as keywords) say what is computed; None fields take the preset's values. A finished
    folder is read, not rewritten; otherwise the folder is held for the run (`wait`: wait for another run that
    holds it, instead of one line and exit status 2)."""
    args = args if args is not None else ScoringArguments(**fields)
    done = finished_scores(fasta, modality, out_dir, preset, args, device=device)
    if done is not None:
        return done
    with open_run(out_dir, wait=wait):
        owner = int(os.environ.get("RANK", "0") or 0) == 0
        done = finished_scores(fasta, modality, out_dir, preset, args, owner, device)   # finished while this one waited?
        if done is not None:
            return done
        run = prepare_run(fasta, modality, out_dir, preset, args, device=device, progress=progress)
        try:
            if run.args.finetune:
                finetune_on_subset(run)
            fisher, m_count = estimate_fisher(run)
            skipped = score_shards(run, fisher)
            return merge_shards(run, fisher, m_count, skipped)
        except BaseException:
            _forget_unused_record(run)
            raise


def finished_scores(fasta, modality: str, out_dir, preset: Preset, args: ScoringArguments,
                    owner: bool = False, device=None) -> Path | None:
    """scores.parquet of a finished run of these settings in `out_dir`, found by reading only (so a finished
    folder reruns on read-only media), or None; a finished run of other settings is one InputError (Sec. 3.2)."""
    out_dir = Path(out_dir)
    parquet, record = out_dir / "scores.parquet", out_dir / "run.json"
    if not (parquet.exists() and (out_dir / "scores.json").exists() and record.exists()):
        return None
    args = args.resolved(preset, choose_device(device))
    ignore = ("world_size",) + (("model",) if args.model is None else ())   # None: the checkpoint's, as recorded
    diff = record_settings(record, args.record(Path(fasta).resolve(), modality, preset), ignore=ignore, write=False)
    if diff:
        raise InputError(f"{out_dir}: holds a run with other settings ({', '.join(diff)}); "
                         f"use another --out or delete it")
    if read_intermediate(out_dir / "scores.json", lambda p: read_json(p, "score file record"), owner=owner) is None \
            or read_intermediate(parquet, _parquet_index, owner=owner) is None:
        return None   # damaged: the run merges its shards again (and says so)
    return parquet


def prepare_run(fasta, modality: str, out_dir, preset: Preset, args: ScoringArguments | None = None, *,
                device=None, progress: bool = True) -> ScoringRun:
    """Read the inputs (the FASTA, the model, its scope), then check or record the run folder's settings, and draw
    D_sub, the Fisher subset of Eq. 9 (Sec. 3.2): an input that cannot be used leaves no record behind."""
    fasta, out_dir = Path(fasta).resolve(), Path(out_dir)
    rank, world, device = dist_context(device)
    args = (args or ScoringArguments()).resolved(preset, device)
    store = token_store(fasta, modality, progress=progress and rank == 0)
    net = get_model(modality, args.model, args.checkpoint, seed=preset.seed)
    if args.checkpoint:   # the model that runs is the checkpoint's: a --model that contradicts it is refused
        args = dataclasses.replace(args, model=model_name(net, args.model, args.checkpoint, preset.model))
    net.attend_padding = bool(args.compat)  # the official model file passes no key padding mask
    if args.compat is None:
        scope_params(net, args.scope)  # a bad scope fails before any work
    settings = args.record(fasta, modality, preset)
    settings["world_size"] = world
    wrote = _check_run(out_dir, settings, rank, world)
    run = ScoringRun(fasta, modality, out_dir, preset, args, settings, rank, world, device, progress)
    run.extra_record = wrote
    run.store = store
    run.n = pool_size(run.store, preset.data.pool_limit)
    run.net = net
    run.net.to(device)
    allowed = np.arange(run.n) if args.exclude is None else np.setdiff1d(np.arange(run.n), args.exclude)
    size = min(preset.scoring.subset_size, allowed.size)
    run.sub_idx = np.sort(np.random.default_rng(preset.seed).choice(allowed, size=size, replace=False))
    if args.compat is None:
        run.sub_tokens = run.store.gather(run.sub_idx, preset.data.max_tokens)
    return run


def finetune_on_subset(run: ScoringRun) -> None:
    """One epoch of MLM on D_sub (Remark 1, A.5), saved as finetuned.pt: rank 0 trains, every rank loads it."""
    ft_path = run.out_dir / "finetuned.pt"
    if run.rank == 0 and read_intermediate(ft_path, lambda p: load_checkpoint(p, run.modality)) is None:
        run.extra["grad_norm_before_ft"] = mean_gradient_norm(run.net, run.sub_batches(), run.device)
        history = train_mlm(run.net, run.sub_tokens, run.sub_idx, run.preset.finetune, run.device,
                            mask_prob=run.preset.data.mask_prob, seed=run.preset.seed, precision=run.args.precision,
                            out_dir=run.out_dir / "finetune", progress=run.progress, desc="fine-tune D_sub")
        atomic_write(run.out_dir / "finetune_history.csv", lambda tmp: history.to_csv(tmp, index=False))
        save_checkpoint(run.net, ft_path, grad_norm_before_ft=run.extra["grad_norm_before_ft"])
    _barrier(run.world)
    run.extra["grad_norm_before_ft"] = torch_load(ft_path).get("grad_norm_before_ft")
    run.net = load_checkpoint(ft_path, run.modality).to(run.device)


def estimate_fisher(run: ScoringRun) -> tuple[dict, int]:
    """diag(F) (Eq. 9) over D_sub, or over the scored pool in compat mode, saved as fisher.pt (or loaded from it);
    returns ({parameter: diag F on the run's device}, M)."""
    fisher_path = run.out_dir / "fisher.pt"
    saved = read_intermediate(fisher_path, _read_fisher, owner=run.rank == 0)
    if saved is not None:
        if saved.get("grad_norm_subset") is not None:
            run.extra["grad_norm_subset"] = saved["grad_norm_subset"]
        return {k: v.to(run.device) for k, v in saved["fisher"].items()}, saved["count"]
    mine = (b for j, b in enumerate(_fisher_batches(run)) if j % run.world == run.rank)
    bar = tqdm(desc="Fisher", unit="seq", disable=not run.progress or run.rank != 0, leave=False)
    fisher, m_count = _fisher_all_reduce(run, mine, bar)
    bar.close()
    if run.rank == 0:
        if run.args.compat is None:  # Assumption 1 check: the mean D_sub gradient of the model that is scored
            run.extra["grad_norm_subset"] = mean_gradient_norm(run.net, run.sub_batches(), run.device)
        saved = {"fisher": fisher, "count": m_count, "scope": run.args.scope,
                 "grad_norm_subset": run.extra.get("grad_norm_subset")}
        torch_save(saved, fisher_path)
    _barrier(run.world)
    return {k: v.to(run.device) for k, v in fisher.items()}, m_count


def _read_fisher(path: Path) -> dict:
    """fisher.pt, or an InputError when it is damaged (unreadable, or without its fields)."""
    saved = torch_load(path)
    if not isinstance(saved, dict) or not isinstance(saved.get("fisher"), dict) or "count" not in saved:
        raise InputError(f"{path}: not a Fisher file (no 'fisher' and 'count')")
    return saved


def _parquet_index(path: Path) -> np.ndarray:
    """The `index` column of a shard or score file, or an InputError when the file is damaged."""
    try:
        return pd.read_parquet(path, columns=["index"])["index"].to_numpy()
    except Exception as exc:   # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise InputError(f"{path}: not a readable parquet file ({type(exc).__name__})") from None


def _shard_done(path: Path, idx: np.ndarray, owner: bool) -> bool:
    """A finished shard: readable, holding (some of: non-finite ones are left out) its indices in order."""
    def check(p: Path):
        got = _parquet_index(p)
        if len(got) and (not np.isin(got, idx).all() or np.any(np.diff(got) <= 0)):
            raise InputError(f"{p}: holds pool indices outside its shard")
        return got

    return read_intermediate(path, check, owner=owner) is not None


def _fisher_batches(run: ScoringRun):
    """D_sub's masked batches; in compat mode the whole pool, unmasked and padded to the official width."""
    if not run.args.compat:
        return run.sub_batches()
    width, all_idx = COMPAT[run.args.compat]["width"], np.arange(run.n)
    # as the official code: tokenize the whole sequence, keep its first `width` tokens (a long one has no <eos>)
    toks = [run.store.tokens(i)[:width] for i in all_idx]
    return full_sequence_batches(toks, all_idx, run.args.batch_size, run.net.vocab, width)


def score_shards(run: ScoringRun, fisher: dict) -> list[str]:
    """Eq. 11 for every pool sequence, shard by shard (this rank's shards, skipping finished ones), each
    committed atomically; returns the ids of sequences left out for a non-finite gradient."""
    shard_dir = run.out_dir / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    bar = tqdm(total=run.n, desc=f"scoring (rank {run.rank})" if run.world > 1 else "scoring", unit="seq",
               disable=not run.progress or run.rank != 0)
    for shard, idx in iter_shards(run.n, run.args.shard_size):
        path = shard_dir / f"shard_{shard:06d}.parquet"
        if shard % run.world != run.rank or _shard_done(path, idx, owner=True):
            bar.update(len(idx))
            continue
        frame, bad = _score_shard(run, idx, fisher, bar)
        if bad and not run.args.skip_nonfinite:
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
        compat = run.args.compat
        meta = {**run.settings, **run.extra, "n_pool": run.n, "n_scored": int(len(scores)),
                "skipped_nonfinite": sorted(set(skipped) | _previous_skips(out_dir)),
                "damping_value": resolve_damping(fisher, run.args.damping), "fisher_count": m_count,
                "fisher_sha256": sha256_file(out_dir / "fisher.pt"), "fasta_sha256": sha256_file(run.fasta),
                "score_sign": -1 if compat else 1,
                "sign": "negated (official bio-coreset): lower = more influential" if compat
                else "score = g^T (diag F + lambda)^-1 g, higher = more influential",
                "corelib_version": __version__, "model_spec": run.net.spec}
        write_scores(scores, meta, out_dir)
    _barrier(run.world)
    return out_dir / "scores.parquet"


def _previous_skips(out_dir: Path) -> set:
    meta = read_intermediate(out_dir / "scores.json", lambda p: read_json(p, "score file record"))
    return set(meta.get("skipped_nonfinite", [])) if meta else set()


def _check_run(out_dir: Path, settings: dict, rank: int, world: int) -> bool:
    """A folder holds one run: resuming with other settings would mix incompatible scores. Returns True when this
    call recorded the settings (a new run)."""
    new = not (out_dir / "run.json").exists()
    diff = record_settings(out_dir / "run.json", settings, ignore=("world_size",), write=rank == 0)
    if diff:
        raise InputError(f"{out_dir}: holds a run with other settings ({', '.join(diff)}); "
                         f"use another --out or delete it")
    _barrier(world)
    return new and rank == 0


WORK = ("finetuned.pt", "finetune/checkpoint.pt", "fisher.pt", "shards/shard_*.parquet")


def _forget_unused_record(run: ScoringRun) -> None:
    """A new run that failed before leaving any work behind takes its run.json with it, so a corrected command
    with other settings is not refused."""
    if run.extra_record and not any(any(run.out_dir.glob(pattern)) for pattern in WORK):
        (run.out_dir / "run.json").unlink(missing_ok=True)


def _fisher_all_reduce(run: ScoringRun, batches, bar):
    device, world = run.device, run.world
    fisher, count = diagonal_fisher(run.net, batches, run.args.scope, device, progress=bar, allow_empty=world > 1,
                                    precision=run.args.precision, reduction=run.args.reduction)
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
    if run.args.compat:
        width = COMPAT[run.args.compat]["width"]
        return full_sequence_batches([run.store.tokens(i)[:width] for i in idx], idx, run.args.batch_size,
                                     run.net.vocab, width)
    toks = run.store.gather(idx, run.preset.data.max_tokens)
    return mlm_batches(toks, idx, run.args.batch_size, run.net.vocab, mask_seed=run.preset.seed,
                       mask_prob=run.preset.data.mask_prob, draw=draw,
                       max_tokens_per_batch=run.args.max_tokens_per_batch)


def _score_shard(run: ScoringRun, idx: np.ndarray, fisher: dict, bar):
    """Eq. 11 of one shard's sequences, averaged over the mask draws (per-draw scores kept as columns when
    there are several), with the masked-token count m and the per-token score m x I (I / m under a summed
    loss); returns (finite rows, ids of non-finite ones)."""
    draws = run.args.mask_draws
    per_draw, losses, groups = [], [], []
    for d in range(draws):
        rows = {}
        batches = _shard_batches(run, idx, d)
        for b_idx, scores, loss, grp in self_influence(run.net, batches, fisher, run.args.damping, run.args.scope, run.device,
                                                       progress=bar if d == draws - 1 else None,
                                                       precision=run.args.precision, reduction=run.args.reduction):
            for j, i in enumerate(b_idx):
                rows[int(i)] = (-scores[j] if run.args.compat else scores[j], loss[j], {g: v[j] for g, v in grp.items()})
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
    width = COMPAT[run.args.compat]["width"] if run.args.compat else None
    masked = [width or masked_count(len(run.store.tokens(i, run.preset.data.max_tokens)), run.preset.data.mask_prob)
              for i in order]
    frame["masked"] = masked
    frame["token_score"] = frame["score"] / frame["masked"] if run.args.reduction == "sum" \
        else frame["score"] * frame["masked"]
    finite = np.isfinite(frame["score"].to_numpy()) & np.isfinite(frame["loss"].to_numpy())
    return frame[finite].reset_index(drop=True), frame.loc[~finite, "id"].tolist()


def ensure_scores(preset: Preset, modality: str, finetune: bool = True, scope: str = "all", checkpoint=None,
                  device=None, progress: bool = True, *, out=None, exclude=None) -> Path:
    """A score folder computed once and then reused (Section 3.2): `out` (default the preset's
    runs/<preset>/scores/<modality>_{ft,noft}[_scope]/) scored by `checkpoint` (default the reference model
    pretrained on the pool), D_sub drawn outside `exclude`; returns the folder."""
    from corelib.layout import RunLayout
    from corelib.training.pretrain import ensure_pretrained

    layout = RunLayout(preset)
    fasta = layout.pool(modality)
    out = Path(out) if out is not None else layout.scores(modality, finetune, scope)
    if not (out / "scores.parquet").exists():
        if checkpoint is None:
            checkpoint = ensure_pretrained(fasta, modality, layout.reference(modality), preset, device=device,
                                           progress=progress, epochs=preset.grid.reference_epochs)
        run_scoring(fasta, modality, out, preset, ScoringArguments(checkpoint=checkpoint, scope=scope,
                                                                   finetune=finetune, exclude=exclude),
                    device=device, progress=progress)
    return out
