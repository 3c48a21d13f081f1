"""The select methods by name (the `select --method` choices), one small class each, and `select_coreset`,
the `select` stage: score file -> coreset folder.

Every method sees scores with "higher = more influential": a score file whose scores.json says its scores
are negated (the official bio-coreset convention, `--compat bio-coreset`) is turned around on reading.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from corelib.errors import InputError
from corelib.files import read_intermediate, read_json, sha256_file
from corelib.rundir import open_run
from corelib.selection import methods


@dataclass(frozen=True)
class Request:
    """What a method may use: the score table (higher = more influential), the budget and its knobs."""

    scores: pd.DataFrame
    budget: int | float
    seed: int = 0
    hard_cutoff: float = 0.05
    strata: int = 50
    cap: int = 1
    clusters: np.ndarray | None = None
    column: str = "loss"
    reference: np.ndarray | None = None   # rows of another coreset (length-matched random)

    @property
    def values(self) -> np.ndarray:
        return self.scores["score"].to_numpy(dtype=float)

    def column_values(self, name: str, method: str) -> np.ndarray:
        """A score-file column, or an InputError naming the method that needs it."""
        if name not in self.scores.columns:
            raise InputError(f"method {method!r} needs a {name!r} column in the score file")
        return self.scores[name].to_numpy(dtype=float)


class Method:
    """One selection method: `select(request)` returns row positions of the score table."""

    name = ""
    default_seed = 0
    default_hard_cutoff = 0.05
    sized = True   # False: the size comes from elsewhere (a reference coreset), not from a budget

    def columns(self, column: str) -> tuple:
        """Score-file columns it reads beyond id, index, length and score (`column`: the band's)."""
        return ()

    def select(self, r: Request) -> np.ndarray:
        raise NotImplementedError


class Random(Method):
    """Uniform random subset (the paper's Random baseline)."""

    name = "random"

    def select(self, r):
        return methods.random(len(r.scores), r.budget, r.seed)


class TopK(Method):
    """Top-k influence (Section 3.3)."""

    name = "topk"

    def select(self, r):
        return methods.top_k(r.values, r.budget)


class BottomK(Method):
    """The k least influential (the easy end; a baseline)."""

    name = "bottomk"

    def select(self, r):
        return methods.bottom_k(r.values, r.budget)


class CCI(Method):
    """Coverage-centric influence, Algorithm 1 with equal-width strata (A.1)."""

    name = "cci"
    binning = "width"

    def select(self, r):
        return methods.cci(r.values, r.budget, r.hard_cutoff, r.strata, r.seed, binning=self.binning)


class CCIQuantile(CCI):
    """Algorithm 1 with equal-count strata."""

    name = "cci-quantile"
    binning = "quantile"


class CCIOfficial(Method):
    """The official code's selection, for reproducing its coresets (`methods.cci_official`)."""

    name = "cci-official"
    default_seed = 42
    default_hard_cutoff = 0.1

    def select(self, r):
        return methods.cci_official(r.values, r.budget, exclude_lowest_ratio=r.hard_cutoff, strata=r.strata,
                                    seed=r.seed)


class LengthStratified(Method):
    """Random within length deciles, in proportion to their size."""

    name = "length"

    def select(self, r):
        return methods.length_stratified(r.scores["length"].to_numpy(), r.budget, seed=r.seed)


class Band(Method):
    """Uniform among examples between the 10% and 90% quantiles of a column (e.g. the MLM loss)."""

    name = "band"

    def columns(self, column):
        """The banded column."""
        return (column,)

    def select(self, r):
        return methods.loss_band(r.column_values(r.column, self.name), r.budget, seed=r.seed)


class ClusterCapped(Method):
    """At most `cap` picks per MMseqs2 cluster."""

    name = "cluster"

    def select(self, r):
        if r.clusters is None:
            raise InputError("method 'cluster' needs cluster assignments (a FASTA for MMseqs2)")
        return methods.cluster_capped(r.clusters, r.budget, cap=r.cap, seed=r.seed)


class TopKPerToken(Method):
    """Top-k on the per-token score m x I (m = masked tokens): undoes the 1/m shortness bias of a mean loss."""

    name = "topk-per-token"

    def columns(self, column):
        """m x I."""
        return ("token_score",)

    def select(self, r):
        return methods.top_k(r.column_values("token_score", self.name), r.budget)


class LossTopK(Method):
    """The k sequences of highest MLM loss under the reference model (perplexity pruning, Marion et al. 2023)."""

    name = "loss-topk"

    def columns(self, column):
        """The MLM loss."""
        return ("loss",)

    def select(self, r):
        return methods.top_k(r.column_values("loss", self.name), r.budget)


class LossBottomK(Method):
    """The k sequences of lowest MLM loss under the reference model."""

    name = "loss-bottomk"

    def columns(self, column):
        """The MLM loss."""
        return ("loss",)

    def select(self, r):
        return methods.bottom_k(r.column_values("loss", self.name), r.budget)


class LengthMatched(Method):
    """Random sequences with the length histogram of a given coreset (`--like`)."""

    name = "length-matched"
    sized = False

    def select(self, r):
        if r.reference is None:
            raise InputError("method 'length-matched' needs the coreset whose lengths it matches (--like DIR)")
        return methods.length_matched(r.scores["length"].to_numpy(), r.reference, seed=r.seed)


REGISTRY: dict[str, Method] = {m.name: m for m in (
    Random(), TopK(), BottomK(), CCI(), CCIQuantile(), CCIOfficial(), LengthStratified(), Band(), ClusterCapped(),
    TopKPerToken(), LossTopK(), LossBottomK(), LengthMatched())}
METHODS = tuple(REGISTRY)


def get_method(name: str) -> Method:
    """A method by name; an unknown one is an InputError listing the known names."""
    if name not in REGISTRY:
        raise InputError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return REGISTRY[name]


def select_indices(method: str, scores: pd.DataFrame, budget=None, seed: int = 0, hard_cutoff: float = 0.05,
                   strata: int = 50, cap: int = 1, clusters=None, column: str = "loss", reference=None,
                   budget_tokens: int | None = None) -> np.ndarray:
    """Run a named method (Section 3.3 / baselines) on a score table whose `score` is higher = more
    influential; returns row positions of the table (its `index` column maps them to pool positions).
    With `budget_tokens` the method keeps as many sequences as fit in that many residues (within one
    sequence, `methods.within_tokens`) instead of `budget` sequences."""
    chosen = get_method(method)
    request = Request(scores, budget, seed, hard_cutoff, strata, cap, clusters, column, reference)
    try:
        if budget_tokens is None:
            if budget is None and chosen.sized:
                raise InputError(f"method {method!r} needs a budget (sequences or tokens)")
            return chosen.select(request)
        if not chosen.sized:
            raise InputError(f"method {method!r} takes its size from the reference coreset, not a token budget")
        return methods.within_tokens(lambda m: chosen.select(dataclasses.replace(request, budget=m)),
                                     scores["length"].to_numpy(), int(budget_tokens), len(scores))
    except ValueError as exc:
        raise InputError(str(exc)) from None


def score_sign(meta: dict) -> int:
    """+1 when a score file stores I (higher = more influential), -1 when it stores -I (official convention)."""
    if "score_sign" in meta:
        return int(meta["score_sign"])
    return -1 if str(meta.get("sign", "")).startswith("negated") else 1


def select_coreset(scores_path, method: str, out, *, budget=None, rate=None, budget_tokens=None, like=None,
                   fasta=None, modality=None, seed=None, hard_cutoff=None, strata: int = 50, cap: int = 1,
                   min_seq_id: float = 0.5, column: str = "loss", wait: bool = False) -> tuple[Path, int, int]:
    """The `select` stage: read a score file, turn its scores to "higher = more influential", run a method
    and write the coreset folder, its manifest recording the pool it indexes; returns (folder, coreset size, pool
    size). A finished folder with the same manifest is read, not rewritten; one with another is refused; `wait`:
    wait for another run holding the folder."""
    from corelib import __version__
    from corelib.selection.files import pool_record, read_coreset, read_scores, score_file, write_coreset

    chosen = get_method(method)
    scores, meta = read_scores(scores_path, extra=chosen.columns(column))   # only the columns the method reads
    fasta = fasta or meta.get("fasta")
    modality = modality or meta.get("modality")
    if not fasta or not modality:
        raise InputError(f"{scores_path}: scores.json names no pool FASTA/modality; pass --fasta and --modality")
    sign = score_sign(meta)
    oriented = scores.assign(score=sign * scores["score"].to_numpy(dtype=float))
    seed = chosen.default_seed if seed is None else seed
    beta = chosen.default_hard_cutoff if hard_cutoff is None else hard_cutoff
    size = budget if budget is not None else rate
    clusters = None
    if method == "cluster":
        from corelib.data.clusters import mmseqs_clusters

        table = mmseqs_clusters(fasta, min_seq_id).set_index("id")["cluster"]
        clusters = table.reindex(scores["id"]).to_numpy()
    reference = None
    if like is not None:   # pool positions of another coreset -> rows of this score table
        pos = np.searchsorted(scores["index"].to_numpy(), read_coreset(like, pool=(fasta, modality))[0])
        reference = pos
    rows = select_indices(method, oriented, size, seed=seed, hard_cutoff=beta, strata=strata, cap=cap,
                          clusters=clusters, column=column, reference=reference, budget_tokens=budget_tokens)
    path = score_file(scores_path)
    manifest = {"method": method, "seed": seed, "budget": int(len(rows)), "n_pool": int(len(scores)),
                "tokens": int(scores["length"].to_numpy()[rows].sum()),
                "parameters": {"budget": budget, "rate": rate, "budget_tokens": budget_tokens,
                               "like": str(like) if like else None, "hard_cutoff": beta, "strata": strata,
                               "cap": cap, "min_seq_id": min_seq_id, "column": column},
                "score_sign": sign, "scores_file": str(path), "scores_sha256": sha256_file(path),
                "fasta": str(fasta), "modality": modality, "corelib_version": __version__}
    manifest["pool"] = pool_record(fasta, modality, scores, meta.get("n_pool"))
    out = Path(out)
    if not _same_coreset(out, manifest):
        with open_run(out, wait=wait):
            if not _same_coreset(out, manifest, owner=True):   # finished while this one waited?
                write_coreset(out, scores, rows, fasta, modality, manifest)
    return out, len(rows), len(scores)


def _same_coreset(out: Path, manifest: dict, owner: bool = False) -> bool:
    """True when `out` holds a finished coreset of this manifest (the corelib version aside); a finished one of
    another manifest is one InputError; a damaged manifest is one warning line (the coreset is written again)."""
    if not (out / "indices.npy").exists():
        return False
    recorded = read_intermediate(out / "manifest.json", lambda p: read_json(p, "coreset manifest"), owner=owner)
    if recorded is None:
        return False
    def what(m: dict) -> dict:   # the selection and the pool's content, not how their files were named
        m = {k: v for k, v in m.items() if k not in ("corelib_version", "scores_file", "fasta")}
        return {**m, **({"pool": {k: v for k, v in m["pool"].items() if k != "fasta"}} if "pool" in m else {})}

    now = json.loads(json.dumps(manifest))
    if "pool" not in recorded:   # an older coreset, made before pools were recorded
        now.pop("pool")
    recorded, now = what(recorded), what(now)
    diff = sorted(k for k in recorded.keys() | now.keys() if recorded.get(k) != now.get(k))
    if diff:
        raise InputError(f"{out}: holds a coreset with other settings ({', '.join(diff)}); "
                         f"use another --out or delete it")
    return True
