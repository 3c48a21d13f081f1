"""One parse of a pool: a tokenized pool store built once per (pool sha256, tokenizer) and then read by index.

A store is a folder under the cache (`$CORELIB_TOKENS`, default `<cache>/tokens/`) named by the pool's sha256
and the modality (the vocabulary), holding memory-mapped arrays:

    tokens.u8        every sequence's tokens, <cls> residues <eos>, uncropped, back to back (uint8)
    offsets.i64      n + 1 offsets into tokens.u8
    ids.bin          the record ids, UTF-8, back to back; id_offsets.i64 (n + 1)
    meta.json        pool path and sha256, modality, vocabulary, n, residues

Scoring, D_sub gathering and pretraining read sequences by pool index from it, so the FASTA is parsed (and
validated) once; the arrays are memory-mapped, so resident memory does not grow with the pool. A crop to
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
from corelib.data.fasta import read_fasta
from corelib.data.tokens import get_vocab
from corelib.files import sha256_file

FORMAT = 1


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
        """Residues per sequence (tokens minus <cls> and <eos>, uncropped)."""
        return np.diff(self.offsets) - 2

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

    def ids(self, start: int = 0, stop: int | None = None) -> list[str]:
        """Record ids of pool indices [start, stop)."""
        return [self.id(i) for i in range(start, self.n if stop is None else min(stop, self.n))]


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
    offsets, id_offsets = [0], [0]
    with open(tmp / "tokens.u8", "wb") as tok, open(tmp / "ids.bin", "wb") as ids:
        for rec in tqdm(read_fasta(fasta, modality), desc="token store", unit="seq", disable=not progress,
                        leave=False):
            row = vocab.encode(rec.seq).astype(np.uint8)
            tok.write(row.tobytes())
            offsets.append(offsets[-1] + row.size)
            name = rec.id.encode()
            ids.write(name)
            id_offsets.append(id_offsets[-1] + len(name))
    np.asarray(offsets, dtype=np.int64).tofile(tmp / "offsets.i64")
    np.asarray(id_offsets, dtype=np.int64).tofile(tmp / "id_offsets.i64")
    n = len(offsets) - 1
    meta = {"format": FORMAT, "fasta": str(fasta), "sha256": digest, "modality": modality,
            "vocabulary": list(vocab.tokens), "n": n, "residues": int(offsets[-1] - 2 * n)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


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
