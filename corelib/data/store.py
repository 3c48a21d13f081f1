"""One parse of a pool: a tokenized pool store built once per (pool sha256, tokenizer) and then read by index.

A store is a folder under the cache (`$CORELIB_TOKENS`, default `<cache>/tokens/`) named by the pool's sha256
and the modality (the vocabulary), holding memory-mapped arrays:

    tokens.u8        every sequence's tokens, <cls> residues <eos>, uncropped, back to back (uint8)
    offsets.i64      n + 1 offsets into tokens.u8
    ids.bin          the record ids, UTF-8, back to back; id_offsets.i64 (n + 1)
    meta.json        pool path and sha256, modality, vocabulary, n, residues

Scoring, D_sub gathering and pretraining read sequences by pool index from it, so the FASTA is parsed (and
validated) once; the arrays are memory-mapped, so resident memory does not grow with the pool. The build
streams too: tokens and ids are appended record by record and the offsets are written in fixed-size chunks,
so no Python object per sequence is kept while building or reading (`ids` returns numpy arrays). A crop to
`max_tokens` is applied on reading, exactly as `Vocab.encode` crops (first residues kept, <eos> appended).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from corelib.config import cache_dir
from corelib.data.fasta import read_fasta, records_at
from corelib.data.tokens import get_vocab
from corelib.errors import InputError
from corelib.files import sha256_file

FORMAT = 1
CHUNK = 1 << 16   # offsets buffered per write while building
ID_CHUNK = 1 << 16   # ids decoded per step by `TokenStore.ids_of`


def store_root() -> Path:
    """Where token stores live: $CORELIB_TOKENS, else <cache>/tokens."""
    env = os.environ.get("CORELIB_TOKENS")
    return Path(env) if env else cache_dir() / "tokens"


def _map(path: Path, dtype) -> np.ndarray:
    """A read-only memory map (an empty array for an empty file, which numpy cannot map)."""
    return np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype=dtype)


class TokenStore:
    """A built store, memory-mapped: `len`, `tokens(i, max_tokens)`, `gather(indices, max_tokens)`, ids."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.n = int(self.meta["n"])
        self._tokens = _map(self.folder / "tokens.u8", np.uint8)
        self.offsets = _map(self.folder / "offsets.i64", np.int64)
        self._ids = _map(self.folder / "ids.bin", np.uint8)
        self.id_offsets = _map(self.folder / "id_offsets.i64", np.int64)
        self.eos = get_vocab(self.meta["modality"]).eos

    def __len__(self) -> int:
        return self.n

    @property
    def lengths(self) -> np.ndarray:
        """Residues per sequence (tokens minus <cls> and <eos>, uncropped), of the whole pool."""
        return np.diff(self.offsets) - 2

    def lengths_of(self, indices) -> np.ndarray:
        """Residues of the given pool indices (read from the offsets of those indices only)."""
        idx = np.asarray(indices, dtype=np.int64)
        return self.offsets[idx + 1] - self.offsets[idx] - 2

    def tokens(self, i: int, max_tokens: int | None = None) -> np.ndarray:
        """Token array of pool index i (uint8), cropped to max_tokens as `Vocab.encode` crops."""
        row = np.asarray(self._tokens[self.offsets[i]:self.offsets[i + 1]])
        if max_tokens is not None and row.size > max_tokens:
            row = np.concatenate([row[: max_tokens - 1], np.array([self.eos], dtype=np.uint8)])
        return row

    def gather(self, indices, max_tokens: int | None = None) -> list[np.ndarray]:
        """Token arrays of many pool indices (in the given order)."""
        return [self.tokens(int(i), max_tokens) for i in np.asarray(indices)]

    def id(self, i: int) -> str:
        """The record id of pool index i."""
        return bytes(self._ids[self.id_offsets[i]:self.id_offsets[i + 1]]).decode()

    def ids(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Record ids of pool indices [start, stop), a numpy str array (no Python list of the pool's ids)."""
        return self.ids_of(np.arange(start, self.n if stop is None else min(stop, self.n)))

    def ids_of(self, indices) -> np.ndarray:
        """Record ids of the given pool indices, in that order, as a numpy str array, decoded in chunks."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        parts = [self._decode(idx[k:k + ID_CHUNK]) for k in range(0, idx.size, ID_CHUNK)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=str)

    def _decode(self, idx: np.ndarray) -> np.ndarray:
        lo, size = self.id_offsets[idx], self.id_offsets[idx + 1] - self.id_offsets[idx]
        width = max(int(size.max()), 1)
        cols = np.arange(width)
        inside = cols[None, :] < size[:, None]
        raw = np.zeros((idx.size, width), dtype=np.uint8)
        raw[inside] = self._ids[(lo[:, None] + cols[None, :])[inside]]
        return raw.view(f"S{width}").ravel().astype(str)   # FASTA ids are ASCII (data.fasta checks)


class _Column:
    """An int64 column appended to a file in chunks of CHUNK (none kept per sequence); `cumulative`: the
    running sums of the added values after a leading 0 (n + 1 offsets)."""

    def __init__(self, path: Path, cumulative: bool = False):
        self.fh = open(path, "wb")
        self.buf, self.k, self.total, self.cumulative = np.empty(CHUNK, dtype=np.int64), 0, 0, cumulative
        if cumulative:
            np.zeros(1, dtype=np.int64).tofile(self.fh)

    def add(self, value: int) -> None:
        self.total += value
        self.buf[self.k] = self.total if self.cumulative else value
        self.k += 1
        if self.k == self.buf.size:
            self.flush()

    def flush(self) -> None:
        self.buf[:self.k].tofile(self.fh)
        self.k = 0

    def close(self) -> None:
        self.flush()
        self.fh.close()


def _build(fasta: Path, modality: str, folder: Path, digest: str, progress: bool) -> None:
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")   # one per process: torchrun ranks may race
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write(fasta, modality, tmp, digest, progress)
    except BaseException:   # a bad record (one InputError line) or a kill: no half-built store is left
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, folder)
    except OSError:   # another process finished the same store first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "meta.json").exists():
            raise


def _write(fasta: Path, modality: str, tmp: Path, digest: str, progress: bool) -> None:
    vocab = get_vocab(modality)
    columns = [_Column(tmp / "offsets.i64", True), _Column(tmp / "id_offsets.i64", True), _Column(tmp / "id_hash.i64")]
    offsets, id_offsets, hashes = columns
    n = 0
    try:
        with open(tmp / "tokens.u8", "wb") as tok, open(tmp / "ids.bin", "wb") as ids:
            for rec in tqdm(read_fasta(fasta, modality, unique_ids=False), desc="token store", unit="seq",
                            disable=not progress, leave=False):
                row = vocab.encode(rec.seq).astype(np.uint8)
                tok.write(row.tobytes())
                offsets.add(row.size)
                name = rec.id.encode()
                ids.write(name)
                id_offsets.add(len(name))
                hashes.add(hash(rec.id))
                n += 1
    finally:
        for column in columns:
            column.close()
    _check_unique_ids(fasta, modality, tmp)
    meta = {"format": FORMAT, "fasta": str(fasta), "sha256": digest, "modality": modality,
            "vocabulary": list(vocab.tokens), "n": n, "residues": int(offsets.total - 2 * n)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def _check_unique_ids(fasta: Path, modality: str, tmp: Path) -> None:
    """read_fasta's duplicate-id error, found from one 8-byte hash per record (sorted once) instead of a set
    of every id; equal hashes are confirmed on the ids themselves, and the second record's line is named."""
    hashes = _map(tmp / "id_hash.i64", np.int64)
    ordered = np.sort(hashes)
    twice = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    if twice.size:
        ids = _map(tmp / "ids.bin", np.uint8)
        offsets = _map(tmp / "id_offsets.i64", np.int64)
        seen: dict[bytes, int] = {}
        dupes = []
        for i in np.flatnonzero(np.isin(hashes, twice)):
            name = bytes(ids[offsets[i]:offsets[i + 1]])
            if name in seen:
                dupes.append(int(i))
            seen.setdefault(name, int(i))
        if dupes:
            _, rec = next(records_at(fasta, [min(dupes)], modality))
            raise InputError(f"{fasta}:{rec.line}: duplicate record id {rec.id!r}")
    (tmp / "id_hash.i64").unlink()


def pool_size(store: TokenStore, limit: int | None = None) -> int:
    """Sequences of a stored pool that a run uses: all of them, or the first `limit` (`data.pool_limit`)."""
    return len(store) if limit is None else min(limit, len(store))


def token_store(fasta, modality: str, progress: bool = True) -> TokenStore:
    """The store of a pool (Section 4 pools), built on first use from one streamed parse of the FASTA."""
    fasta = Path(fasta)
    digest = sha256_file(fasta)
    vocab = get_vocab(modality)
    folder = store_root() / f"{digest[:32]}_{modality}"
    meta = folder / "meta.json"
    if meta.exists():
        known = json.loads(meta.read_text())
        if known.get("format") == FORMAT and known.get("vocabulary") == list(vocab.tokens):
            return TokenStore(folder)
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _build(fasta, modality, folder, digest, progress)
    return TokenStore(folder)
