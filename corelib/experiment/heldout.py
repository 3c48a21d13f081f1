"""The held-out slice of a pool: sequences no arm trains on, for the intrinsic metric (held-out MLM loss).

Per source (the pool header's `source=`, "unknown" without one), the sequences with the smallest
sha256("heldout:" + id) are held out: 5% of the source's sequences among the pool's first `pool_limit`,
rounded up, at most 300; a source with fewer than 20 sequences gives none. The choice depends only on the
ids, so it is the same on every machine and for every seed. The slice is left out of the reference (Full
pool) pretraining, of every coreset's candidates and so of every pretraining run, and written once to
experiment/<modality>/heldout/ (heldout.csv, manifest.json with the rule and the unigram entropy of the
held-out residues, overall and per source family).
"""
from __future__ import annotations

import hashlib
import heapq
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from corelib.errors import InputError
from corelib.files import atomic_write

HELDOUT_SHARE = 0.05
HELDOUT_CAP = 300          # at most this many per source
HELDOUT_MIN_SOURCE = 20    # a smaller source keeps all its sequences for training
HELDOUT_SALT = "heldout:"
HELDOUT_MASK_SEED = 7919   # the held-out masks: the same for every arm and seed (paired)
RULE = {"share": HELDOUT_SHARE, "cap": HELDOUT_CAP, "min_source": HELDOUT_MIN_SOURCE, "salt": HELDOUT_SALT,
        "mask_seed": HELDOUT_MASK_SEED}


def heldout_key(record_id: str) -> int:
    """The hash that orders a source's sequences for holding out: sha256("heldout:" + id) as an integer."""
    return int(hashlib.sha256((HELDOUT_SALT + record_id).encode()).hexdigest(), 16)


def quota(count: int) -> int:
    """Held-out sequences of a source with `count` sequences (module docstring)."""
    return 0 if count < HELDOUT_MIN_SOURCE else min(HELDOUT_CAP, math.ceil(HELDOUT_SHARE * count))


def choose_heldout(records) -> pd.DataFrame:
    """The held-out slice of (index, id, source, family, seq) records, streamed with one bounded heap per
    source: [index, id, source, family, seq], sorted by pool index."""
    heaps: dict[str, list] = {}
    counts: dict[str, int] = {}
    for index, rid, source, family, seq in records:
        counts[source] = counts.get(source, 0) + 1
        heap = heaps.setdefault(source, [])
        item = (-heldout_key(rid), index, rid, source, family, seq)
        if len(heap) < HELDOUT_CAP:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)
    rows = []
    for source, heap in heaps.items():
        keep = sorted(heap, key=lambda t: -t[0])[: quota(counts[source])]
        rows += [{"index": t[1], "id": t[2], "source": t[3], "family": t[4], "seq": t[5]} for t in keep]
    table = pd.DataFrame(rows, columns=["index", "id", "source", "family", "seq"])
    table.attrs["pool_counts"] = counts
    return table.sort_values("index", ignore_index=True)


def _records(fasta, modality: str, n_pool: int):
    from corelib.data.fasta import read_fasta

    for i, rec in enumerate(read_fasta(fasta, modality)):
        if i >= n_pool:
            break
        yield i, rec.id, rec.fields.get("source", "unknown"), rec.fields.get("family", "unknown"), rec.seq


@dataclass(frozen=True)
class Heldout:
    """The held-out slice of one pool: its table (index, id, source, family, length), the pool size, and the
    unigram entropy (nats) of its residues as the MLM sees them ("all" and per source)."""

    table: pd.DataFrame
    n_pool: int
    entropy: dict

    @property
    def indices(self) -> np.ndarray:
        return self.table["index"].to_numpy(dtype=np.int64)

    def train_indices(self) -> np.ndarray:
        """Pool indices every arm may train on (the pool less the held-out slice), sorted."""
        return np.setdiff1d(np.arange(self.n_pool, dtype=np.int64), self.indices, assume_unique=True)

    def __len__(self) -> int:
        return len(self.table)


def _entropy(table: pd.DataFrame, max_tokens: int) -> dict:
    from corelib.data.tokens import residue_entropy

    crop = table["seq"].str.slice(0, max_tokens - 2)
    out = {"all": residue_entropy(crop)} if len(table) else {}
    for source, part in crop.groupby(table["source"], sort=True):
        out[str(source)] = residue_entropy(part)
    return out


def ensure_heldout(folder, fasta, modality: str, n_pool: int, max_tokens: int) -> Heldout:
    """The held-out slice of a pool's first `n_pool` sequences, chosen once and written to `folder`
    (heldout.csv, manifest.json); later calls read it back and refuse a folder made by another rule or pool size."""
    folder = Path(folder)
    csv, manifest = folder / "heldout.csv", folder / "manifest.json"
    if csv.exists() and manifest.exists():
        meta = json.loads(manifest.read_text())
        if meta.get("rule") != RULE or meta.get("n_pool") != n_pool or meta.get("max_tokens") != max_tokens:
            raise InputError(f"{folder}: holds a held-out slice made with another rule or pool size; delete it")
        return Heldout(pd.read_csv(csv, dtype={"id": str, "source": str, "family": str}), n_pool, meta["entropy"])
    table = choose_heldout(_records(fasta, modality, n_pool))
    if table.empty:
        raise InputError(f"{fasta}: no source has {HELDOUT_MIN_SOURCE} sequences among the first {n_pool}: "
                         f"nothing can be held out for the intrinsic metric")
    entropy = _entropy(table, max_tokens)
    counts = table.attrs["pool_counts"]
    held = table.drop(columns="seq").assign(length=table["seq"].str.len())
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"rule": RULE, "n_pool": n_pool, "max_tokens": max_tokens, "fasta": str(fasta), "entropy": entropy,
            "sources": {s: {"pool": int(c), "heldout": int((held["source"] == s).sum())} for s, c in counts.items()}}
    atomic_write(csv, lambda tmp: held.to_csv(tmp, index=False))
    atomic_write(manifest, lambda tmp: tmp.write_text(json.dumps(meta, indent=2, sort_keys=True)))
    return Heldout(held, n_pool, entropy)


def heldout_tokens(fasta, modality: str, held: Heldout, max_tokens: int) -> list[np.ndarray]:
    """Token arrays of the held-out sequences, in the order of `held.table`."""
    from corelib.data.store import token_store

    return token_store(fasta, modality, progress=False).gather(held.indices, max_tokens)


def heldout_size(preset, modality: str) -> int:
    """How many sequences a preset's pool holds out (reads the pool's ids)."""
    from corelib.data.store import pool_size, token_store
    from corelib.layout import RunLayout

    fasta = RunLayout(preset).pool(modality)
    n_pool = pool_size(token_store(fasta, modality, progress=False), preset.data.pool_limit)
    return len(choose_heldout(_records(fasta, modality, n_pool)))
