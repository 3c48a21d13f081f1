"""The held-out slice of a pool (Section 4's intrinsic metric): whole sequence clusters no arm trains on.

The pool's first `pool_limit` sequences are clustered with MMseqs2 (`corelib.data.clusters.SPLIT_CLUSTERING`:
proteins at 50% identity and 80% coverage, as UniRef50; RNA at 80%, which groups the near-identical amplicon
reads). Clusters are taken in the order of sha256("heldout:" + id) of their first-keyed member, which is the
sequence evaluated; a cluster is held out whole when its evaluated member's source (the header's `source=`,
"unknown" without one) has not yet met its quota: 5% of the source's sequences, rounded up, at most 300; a source
with fewer than 20 sequences gives none; a cluster larger than 50 stays in training whole. The evaluated
sequences are read through a fixed seeded window of `max_tokens` (`corelib.evaluation.intrinsic`).

Held out and excluded from the reference (Full pool) pretraining, D_sub, every coreset's candidates and so every
arm: every member of a held-out cluster, and every pool sequence that an MMseqs2 search finds holding a near
duplicate of an evaluated window (`duplicate_id` identity over 80% of it) or that contains it exactly (what the
clustering of whole sequences missed; the manifest counts them). The choice
depends only on the ids and sequences, so it is the same on every machine and for every seed.

Written once to experiment/<modality>/heldout/: heldout.csv (the evaluated sequences), excluded.npy (every
excluded pool index), neighbours.csv (the searched near copies) and manifest.json (the rule, the clustering, the
entropy of the masked residues overall and per source, each source's share of the pool).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from corelib.data.clusters import SPLIT_CLUSTERING, mmseqs_neighbours, pool_clusters
from corelib.data.tokens import get_vocab, random_windows
from corelib.errors import InputError
from corelib.evaluation.intrinsic import HELDOUT_MASK_SEED, HELDOUT_WINDOW_SEED, masked_entropy, masked_residues
from corelib.files import atomic_write

HELDOUT_SHARE = 0.05
HELDOUT_CAP = 300          # at most this many per source
HELDOUT_MIN_SOURCE = 20    # a smaller source keeps all its sequences for training
HELDOUT_MAX_CLUSTER = 50   # a larger cluster is never held out (it stays in training whole)
HELDOUT_SALT = "heldout:"
RULE = {"share": HELDOUT_SHARE, "cap": HELDOUT_CAP, "min_source": HELDOUT_MIN_SOURCE, "salt": HELDOUT_SALT,
        "max_cluster": HELDOUT_MAX_CLUSTER, "mask_seed": HELDOUT_MASK_SEED, "window_seed": HELDOUT_WINDOW_SEED,
        "unit": "cluster", "masked_only": True}


def heldout_key(record_id: str) -> int:
    """The hash that orders sequences for holding out: sha256("heldout:" + id) as an integer."""
    return int(hashlib.sha256((HELDOUT_SALT + record_id).encode()).hexdigest(), 16)


def quota(count: int) -> int:
    """Held-out sequences of a source with `count` sequences (module docstring)."""
    return 0 if count < HELDOUT_MIN_SOURCE else min(HELDOUT_CAP, math.ceil(HELDOUT_SHARE * count))


def choose_heldout(ids, sources, clusters) -> tuple[np.ndarray, np.ndarray]:
    """(evaluated pool indices, every pool index of a held-out cluster), both sorted, by the module docstring's
    rule from each pool sequence's id, source and cluster label."""
    ids, sources, clusters = list(ids), list(sources), np.asarray(clusters)
    keys = [heldout_key(i) for i in ids]
    counts = pd.Series(sources).value_counts().to_dict()
    left = {s: quota(c) for s, c in counts.items()}
    members: dict[int, list[int]] = {}
    for k, c in enumerate(clusters.tolist()):
        members.setdefault(c, []).append(k)
    firsts = sorted((min(m, key=keys.__getitem__) for m in members.values() if len(m) <= HELDOUT_MAX_CLUSTER),
                    key=keys.__getitem__)
    evaluated, excluded = [], []
    for k in firsts:
        if left.get(sources[k], 0) > 0:
            left[sources[k]] -= 1
            evaluated.append(k)
            excluded += members[int(clusters[k])]
    return np.array(sorted(evaluated), dtype=np.int64), np.array(sorted(excluded), dtype=np.int64)


@dataclass(frozen=True)
class Heldout:
    """The held-out slice of one pool: the evaluated sequences (index, id, source, length, cluster), every
    excluded pool index, the pool size, the entropy (nats) of the masked residues of the evaluated windows ("all"
    and per source) and each source's share of the pool (the weights of the overall figure)."""

    table: pd.DataFrame
    excluded: np.ndarray
    n_pool: int
    entropy: dict
    weights: dict
    neighbours: pd.DataFrame   # [item, index, kind, identity]: pool sequences excluded as near or exact copies

    @property
    def indices(self) -> np.ndarray:
        """Pool indices of the evaluated held-out sequences."""
        return self.table["index"].to_numpy(dtype=np.int64)

    def train_indices(self) -> np.ndarray:
        """Pool indices every arm may train on (the pool less every excluded index), sorted."""
        return np.setdiff1d(np.arange(self.n_pool, dtype=np.int64), self.excluded, assume_unique=True)

    def __len__(self) -> int:
        return len(self.table)


def _records(fasta, modality: str, n_pool: int):
    from itertools import islice

    from corelib.data.fasta import read_fasta

    ids, sources, seqs = [], [], []
    for rec in islice(read_fasta(fasta, modality), n_pool):
        ids.append(rec.id)
        sources.append(rec.fields.get("source", "unknown"))
        seqs.append(rec.seq)
    return ids, sources, seqs


def _exact_copies(windows: list[str], seqs: list[str], candidates: np.ndarray, k: int = 16) -> list[tuple[int, int]]:
    """(window number, pool index) where a candidate pool sequence contains an evaluated window exactly: each
    window's first k residues are looked up in a rolling hash of every candidate's k-mers, and the hits compared
    in full (a window shorter than k is compared against every candidate)."""
    text = "\x00".join(seqs[i] for i in candidates)
    starts = np.cumsum([0] + [len(seqs[i]) + 1 for i in candidates[:-1]]) if len(candidates) else np.zeros(0, int)
    owner = lambda offset: int(candidates[np.searchsorted(starts, offset, side="right") - 1])  # noqa: E731
    found = set()
    short = [w for w in range(len(windows)) if len(windows[w]) < k]
    for w in short:
        at = text.find(windows[w])
        while at >= 0:
            found.add((w, owner(at)))
            at = text.find(windows[w], at + 1)
    codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.uint64)
    if codes.size >= k:
        base = np.uint64(31)
        kmers = np.zeros(codes.size - k + 1, dtype=np.uint64)
        for j in range(k):   # rolling polynomial hash of every k-mer, O(N) memory (uint64 wraps around)
            kmers = kmers * base + codes[j : j + kmers.size]
        heads = {}
        for w in range(len(windows)):
            if len(windows[w]) >= k:
                head = 0
                for c in windows[w][:k].encode("ascii"):
                    head = (head * 31 + c) % 2**64   # the same hash in Python integers
                heads.setdefault(head, []).append(w)
        hits = np.flatnonzero(np.isin(kmers, np.array(list(heads), dtype=np.uint64)))
        for at in hits.tolist():
            for w in heads.get(int(kmers[at]), []):
                if text.startswith(windows[w], at):
                    found.add((w, owner(at)))
    return sorted(found)


def _neighbours(held: np.ndarray, windows: list[str], ids: list[str], seqs: list[str], excluded: np.ndarray,
                modality: str) -> pd.DataFrame:
    """Pool sequences outside the held-out clusters holding a near (MMseqs2) or exact copy of an evaluated window."""
    rest = np.setdiff1d(np.arange(len(ids)), excluded)
    near = mmseqs_neighbours([ids[i] for i in held], windows, [ids[i] for i in rest], [seqs[i] for i in rest],
                             modality)
    position = {pid: k for k, pid in enumerate(ids)}
    rows = [{"item": q, "index": position[t], "kind": "near", "identity": float(f)}
            for q, t, f in near.itertuples(index=False)]
    rows += [{"item": ids[held[k]], "index": i, "kind": "exact", "identity": 1.0}
             for k, i in _exact_copies(windows, seqs, rest)]
    return pd.DataFrame(rows, columns=["item", "index", "kind", "identity"]).drop_duplicates(["item", "index"])


def ensure_heldout(folder, fasta, modality: str, n_pool: int, max_tokens: int, mask_prob: float = 0.15,
                   cache_dir=None, cache_key: str = "") -> Heldout:
    """The held-out slice of a pool's first `n_pool` sequences, chosen once and written to `folder` (module
    docstring; the pool's clusters cached in `cache_dir` under `cache_key`); later calls read it back and refuse a
    folder made by another rule or pool size."""
    folder = Path(folder)
    manifest = folder / "manifest.json"
    files = [folder / "heldout.csv", folder / "excluded.npy", folder / "neighbours.csv", manifest]
    if all(f.exists() for f in files):
        meta = json.loads(manifest.read_text())
        if (meta.get("rule") != RULE or meta.get("n_pool") != n_pool or meta.get("max_tokens") != max_tokens
                or meta.get("clustering") != SPLIT_CLUSTERING[modality] or meta.get("mask_prob") != mask_prob):
            raise InputError(f"{folder}: holds a held-out slice made with another rule or pool size; delete it")
        table = pd.read_csv(folder / "heldout.csv", dtype={"id": str, "source": str})
        neighbours = pd.read_csv(folder / "neighbours.csv", dtype={"item": str})
        return Heldout(table, np.load(folder / "excluded.npy"), n_pool, meta["entropy"], meta["weights"], neighbours)
    ids, sources, seqs = _records(fasta, modality, n_pool)
    clusters = pool_clusters(ids, seqs, modality, cache_dir, cache_key)
    held, excluded = choose_heldout(ids, sources, clusters)
    if held.size == 0:
        raise InputError(f"{fasta}: no source has {HELDOUT_MIN_SOURCE} sequences in clusters of at most "
                         f"{HELDOUT_MAX_CLUSTER} among the first {n_pool}: nothing can be held out for the intrinsic "
                         f"metric")
    vocab = get_vocab(modality)
    tokens = random_windows([vocab.encode(seqs[i]) for i in held], held, max_tokens, HELDOUT_WINDOW_SEED)
    windows = ["".join(vocab.tokens[t] for t in row[1:-1]) for row in tokens]
    neighbours = _neighbours(held, windows, ids, seqs, excluded, modality)
    excluded = np.union1d(excluded, neighbours["index"].to_numpy(dtype=np.int64))
    held_sources = [sources[i] for i in held]
    entropy = masked_entropy(masked_residues(tokens, held_sources, vocab, HELDOUT_MASK_SEED, mask_prob))
    counts = pd.Series(sources).value_counts()
    weights = {s: float(counts[s] / counts.sum()) for s in sorted(set(held_sources))}
    table = pd.DataFrame({"index": held, "id": [ids[i] for i in held], "source": held_sources,
                          "length": [len(seqs[i]) for i in held], "cluster": clusters[held]})
    meta = {"rule": RULE, "clustering": SPLIT_CLUSTERING[modality], "n_pool": n_pool, "max_tokens": max_tokens,
            "mask_prob": mask_prob, "fasta": str(fasta), "entropy": entropy, "weights": weights,
            "heldout": int(held.size), "excluded": int(excluded.size),
            "excluded_beyond_clusters": int(neighbours["index"].nunique()),
            "clusters": int(clusters.max() + 1) if clusters.size else 0,
            "sources": {s: {"pool": int(c), "heldout": held_sources.count(s)} for s, c in counts.items()}}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "heldout.csv", lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(folder / "neighbours.csv", lambda tmp: neighbours.to_csv(tmp, index=False))
    atomic_write(folder / "excluded.npy", lambda tmp: _save_npy(tmp, excluded))
    atomic_write(manifest, lambda tmp: tmp.write_text(json.dumps(meta, indent=2, sort_keys=True)))
    return Heldout(table, excluded, n_pool, entropy, weights, neighbours)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:   # a handle: np.save would append .npy to a .tmp name
        np.save(fh, array)


def heldout_windows(store, held: Heldout, max_tokens: int) -> list[np.ndarray]:
    """Token arrays of the evaluated held-out sequences in the order of `held.table`: their fixed seeded windows."""
    return random_windows(store.gather(held.indices), held.indices, max_tokens, HELDOUT_WINDOW_SEED)


def copies_in(store, held: Heldout, indices, max_tokens: int) -> dict:
    """How many evaluated held-out windows a training set still holds a copy of: "exact" (a training sequence
    contains the window, checked by string matching here) and "near" (a searched near duplicate, excluded when
    the slice was chosen); both 0 when the split holds (Section 4)."""
    indices = np.asarray(indices, dtype=np.int64)
    vocab = get_vocab(store.meta["modality"])
    letters = np.array(list(vocab.tokens), dtype=object)
    text = lambda row: "".join(letters[row[1:-1]])  # noqa: E731
    windows = [text(t) for t in heldout_windows(store, held, max_tokens)]
    seqs = {int(i): text(store.tokens(int(i))) for i in indices}
    exact = {w for w, _ in _exact_copies(windows, seqs, indices)}
    near = held.neighbours[held.neighbours["index"].isin(indices)]["item"].nunique()
    return {"exact": len(exact), "near": int(near)}


def weighted_heldout(losses: pd.DataFrame, entropy: dict, weights: dict) -> tuple[pd.DataFrame, dict]:
    """Held-out rows whose ratio of sums over all items is the mean of the sources' losses weighted by each source's
    share of the pool (Section 4): item i of source s scaled by w_s / D_s (D_s = the source's masked tokens, the same
    for every arm and seed); the entropy "all" is the same weighted mean of the sources' entropies of the masked
    residues, the pooled one kept as "pooled"."""
    weights = {s: w for s, w in weights.items() if s in entropy}
    total = sum(weights.values())
    out = {**entropy, "pooled": entropy.get("all"), "all": sum(w * entropy[s] for s, w in weights.items()) / total}
    if losses.empty:
        return losses, out
    first = losses.drop_duplicates("item").groupby("family")["den"].sum()
    scale = losses["family"].astype(str).map({s: weights.get(s, 0.0) / total / first[s] for s in first.index})
    return losses.assign(num=losses["num"] * scale, den=losses["den"] * scale), out
