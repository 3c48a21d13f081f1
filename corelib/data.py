"""FASTA streaming and validation, the RNA-FM / ESM vocabularies, cropping, deterministic MLM masks, batching.

Sequences are read with Biopython's `SimpleFastaParser` over a line stream that counts lines, so that
every structural problem is reported with the file and the line. Nothing is loaded whole into memory.
"""
from __future__ import annotations

import collections
import functools
import gzip
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from Bio.SeqIO.FastaIO import SimpleFastaParser

from .errors import InputError

MODALITIES = ("rna", "protein")
# RNA: ACGU plus the IUPAC ambiguity codes of the RNA-FM vocabulary (its '-' gap token is not a residue).
RNA_LETTERS = frozenset("ACGURYKMSWBDHVN")
# Protein: the amino-acid tokens of the ESM vocabulary (fair-esm Alphabet; '.', '-' are gap tokens).
PROTEIN_LETTERS = frozenset("LAGVSERTIDPKQNFYMHWCXBUZO")
RNA_STANDARD = "ACGU"
PROTEIN_STANDARD = "LAGVSERTIDPKQNFYMHWC"
_AMINO_ONLY = frozenset("EFIJLOPQXZ")  # letters that are not nucleotide codes: a protein given as RNA
_DESC_FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True)
class Record:
    """One FASTA record: id (first word of the header), description, normalized sequence, header line."""

    id: str
    description: str
    seq: str
    line: int
    fields: dict = field(default_factory=dict, compare=False)


def _open_binary(path: Path):
    """Open plain or gzip FASTA by content (magic bytes), not by extension."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a FASTA file")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _lines(path: Path, headers: collections.deque, state: dict) -> Iterator[str]:
    """Decoded lines of a FASTA file; pushes header line numbers and rejects text before the first header."""
    n = 0
    try:
        with _open_binary(path) as fh:
            for n, raw in enumerate(fh, start=1):
                state["line"] = n
                if b"\x00" in raw:
                    raise InputError(f"{path}:{n}: binary data (NUL byte), not a FASTA file")
                try:
                    line = raw.decode("ascii")
                except UnicodeDecodeError:
                    raise InputError(f"{path}:{n}: binary or non-ASCII data, not a FASTA file") from None
                if line.startswith(">"):
                    headers.append(n)
                elif not headers and line.strip():
                    raise InputError(f"{path}:{n}: sequence data before any '>' header")
                yield line
    except EOFError:
        raise InputError(f"{path}: truncated gzip file (stream ends after line {n})") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"{path}: corrupt gzip data after line {n} ({exc})") from None


def _locate(path: Path, header_line: int, pos: int) -> int:
    """The file line holding residue `pos` (0-based) of the record whose header is on `header_line`."""
    seen = 0
    with _open_binary(path) as fh:
        for n, raw in enumerate(fh, start=1):
            if n <= header_line:
                continue
            width = len(raw.strip().replace(b" ", b""))
            if seen + width > pos:
                return n
            seen += width
    return header_line + 1


def normalize(seq: str, modality: str) -> str:
    """Upper-case (lowercase folded) and, for RNA, T->U; a trailing protein stop '*' is dropped."""
    seq = seq.upper()
    if modality == "rna":
        return seq.replace("T", "U")
    return seq[:-1] if seq.endswith("*") else seq


def _check_letters(path: Path, rec_id: str, line: int, seq: str, modality: str) -> None:
    letters = RNA_LETTERS if modality == "rna" else PROTEIN_LETTERS
    bad = set(seq) - letters
    if modality == "protein" and not bad and len(seq) >= 20 and set(seq) <= set("ACGTUN"):
        raise InputError(f"{path}:{line}: record {rec_id!r} looks like a nucleotide sequence "
                         f"(only ACGTUN); use --modality rna")
    if not bad:
        return
    pos = min(seq.index(c) for c in bad)
    char = seq[pos]
    where = f"{path}:{_locate(path, line, pos)}: record {rec_id!r}, residue {pos + 1}"
    if modality == "rna" and char in _AMINO_ONLY:
        raise InputError(f"{where}: amino-acid letter {char!r}; this looks like a protein sequence, "
                         f"use --modality protein")
    raise InputError(f"{where}: invalid character {char!r} for {modality} "
                     f"(allowed: {''.join(sorted(letters))})")


def read_fasta(path, modality: str | None = None) -> Iterator[Record]:
    """Stream validated, normalized records from a plain or gzip FASTA (the pool format of Fig. 1/DESIGN)."""
    path = Path(path)
    if modality is not None and modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; choose rna or protein")
    headers: collections.deque = collections.deque()
    state = {"line": 0}
    seen: set[str] = set()
    count = 0
    for title, seq in SimpleFastaParser(_lines(path, headers, state)):
        line = headers.popleft()
        parts = title.split(None, 1)
        if not parts or title[:1].isspace():
            raise InputError(f"{path}:{line}: empty record id in header")
        rec_id = parts[0]
        desc = parts[1] if len(parts) > 1 else ""
        if not seq:
            raise InputError(f"{path}:{line}: record {rec_id!r} has a header but no sequence")
        if rec_id in seen:
            raise InputError(f"{path}:{line}: duplicate record id {rec_id!r}")
        seen.add(rec_id)
        if modality is not None:
            seq = normalize(seq, modality)
            _check_letters(path, rec_id, line, seq, modality)
        count += 1
        yield Record(rec_id, desc, seq, line, dict(_DESC_FIELD.findall(desc)))
    if count == 0:
        raise InputError(f"{path}: no FASTA records (empty file)")


def check_fasta(path, modality: str, max_tokens: int = 1024) -> dict:
    """Validate a FASTA file end to end; counts, cropping and a length summary (the `data check` verb)."""
    lengths = []
    sources: collections.Counter = collections.Counter()
    max_len = max_tokens - 2
    for rec in read_fasta(path, modality):
        lengths.append(len(rec.seq))
        sources[rec.fields.get("source", "unknown")] += 1
    arr = np.asarray(lengths)
    return {
        "file": str(path), "modality": modality, "sequences": int(arr.size),
        "residues": int(arr.sum()), "cropped": int((arr > max_len).sum()), "max_tokens": max_tokens,
        "length_min": int(arr.min()), "length_median": float(np.median(arr)),
        "length_mean": round(float(arr.mean()), 2), "length_max": int(arr.max()),
        "by_source": dict(sorted(sources.items())),
    }


# ----------------------------------------------------------------------------- vocabularies
@dataclass(frozen=True)
class Vocab:
    """A token vocabulary in the exact order of RNA-FM's / fair-esm's Alphabet (so checkpoints load)."""

    modality: str
    tokens: tuple[str, ...]

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    @property
    def pad(self) -> int:
        return self.index["<pad>"]

    @property
    def cls(self) -> int:
        return self.index["<cls>"]

    @property
    def eos(self) -> int:
        return self.index["<eos>"]

    @property
    def mask(self) -> int:
        return self.index["<mask>"]

    @property
    def unk(self) -> int:
        return self.index["<unk>"]

    @functools.cached_property
    def standard_ids(self) -> np.ndarray:
        """Ids of the standard residues, used for the 10% random replacement of MLM masking."""
        letters = RNA_STANDARD if self.modality == "rna" else PROTEIN_STANDARD
        return np.array([self.index[c] for c in letters], dtype=np.int64)

    @functools.cached_property
    def _table(self) -> np.ndarray:
        table = np.full(256, self.unk, dtype=np.int64)
        for tok, i in self.index.items():
            if len(tok) == 1:
                table[ord(tok)] = i
        return table

    def encode(self, seq: str, max_tokens: int | None = None) -> np.ndarray:
        """<cls> + residues (cropped to max_tokens - 2, keeping the 5'/N-terminal part) + <eos>."""
        if max_tokens is not None:
            seq = seq[: max_tokens - 2]
        body = self._table[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
        return np.concatenate(([self.cls], body, [self.eos])).astype(np.int64)

    def __len__(self) -> int:
        return len(self.tokens)


@functools.lru_cache(maxsize=None)
def get_vocab(modality: str) -> Vocab:
    """RNA: `fm.Alphabet.from_architecture('ESM-1b', 'rna')`; protein: fair-esm `Alphabet('ESM-1b')`."""
    if modality == "rna":
        import fm

        return Vocab("rna", tuple(fm.Alphabet.from_architecture("ESM-1b", "rna").all_toks))
    if modality == "protein":
        import esm

        return Vocab("protein", tuple(esm.Alphabet.from_architecture("ESM-1b").all_toks))
    raise InputError(f"unknown modality {modality!r}; choose rna or protein")


# ----------------------------------------------------------------------------- masking and batching
def mlm_mask(tokens: np.ndarray, index: int, seed: int, vocab: Vocab, mask_prob: float = 0.15):
    """BERT masking (15%; 80% <mask>, 10% random residue, 10% kept) keyed by (seed, sequence index).

    Returns (inputs, labels) with labels = -100 where no prediction is made; <cls>/<eos> are never
    chosen. The same sequence gets the same mask whatever batch it is in (A.5 masking).
    """
    rng = np.random.default_rng([seed, index])
    n_res = len(tokens) - 2
    n_mask = max(1, int(round(mask_prob * n_res)))
    pos = 1 + np.sort(rng.choice(n_res, size=n_mask, replace=False))
    roll = rng.random(n_mask)
    rand_tok = vocab.standard_ids[rng.integers(0, len(vocab.standard_ids), size=n_mask)]
    inputs = tokens.copy()
    labels = np.full_like(tokens, -100)
    labels[pos] = tokens[pos]
    inputs[pos[roll < 0.8]] = vocab.mask
    swap = (roll >= 0.8) & (roll < 0.9)
    inputs[pos[swap]] = rand_tok[swap]
    return inputs, labels


def pad_batch(rows: list[np.ndarray], pad_value: int) -> np.ndarray:
    """Right-pad 1-D token arrays to the longest row (a batch of similar lengths pads little)."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), pad_value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def length_batches(lengths, batch_size: int, seed: int | None = None, window: int = 64) -> list[np.ndarray]:
    """Length-bucketed batches: sort by length inside windows of `window` batches, then cut.

    With a seed the pool order and the batch order are shuffled reproducibly (training); without,
    batches follow the pool order window by window (scoring). Every index appears exactly once.
    """
    lengths = np.asarray(lengths)
    order = np.arange(len(lengths))
    rng = np.random.default_rng(seed) if seed is not None else None
    if rng is not None:
        order = rng.permutation(order)
    span = batch_size * window
    batches = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def gc_content(seq: str) -> float:
    """Fraction of G+C among unambiguous nucleotides (0 when none)."""
    acgu = sum(seq.count(c) for c in "ACGU")
    return (seq.count("G") + seq.count("C")) / acgu if acgu else 0.0


# ----------------------------------------------------------------------------- tensors for the model
def count_pool(fasta, modality: str, limit: int | None = None) -> int:
    """Number of records (validating the whole file on the way)."""
    n = 0
    for _ in read_fasta(fasta, modality):
        n += 1
        if limit is not None and n >= limit:
            break
    return n


def gather_tokens(fasta, modality: str, wanted, max_tokens: int) -> list[np.ndarray]:
    """Token arrays of the pool indices in `wanted` (sorted), streamed from the FASTA."""
    wanted = np.asarray(wanted)
    out, k = [], 0
    for i, rec in enumerate(read_fasta(fasta, modality)):
        if k == len(wanted):
            break
        if i == wanted[k]:
            out.extend(tokenize([rec.seq], modality, max_tokens))
            k += 1
    return out


def tokenize(seqs, modality: str, max_tokens: int) -> list[np.ndarray]:
    """Token arrays (uint8, <cls> ... <eos>, cropped to max_tokens) for a list of sequences."""
    vocab = get_vocab(modality)
    return [vocab.encode(s, max_tokens).astype(np.uint8) for s in seqs]


def mlm_batches(tokens: list[np.ndarray], indices, batch_size: int, vocab: Vocab, mask_seed: int,
                order_seed: int | None = None, mask_prob: float = 0.15):
    """Yield (inputs, labels, pool indices) tensors: length-bucketed batches, masks keyed by
    (mask_seed, pool index). `tokens[k]` belongs to pool index `indices[k]`."""
    import torch

    indices = np.asarray(indices)
    for batch in length_batches([len(t) for t in tokens], batch_size, seed=order_seed):
        pairs = [mlm_mask(tokens[k].astype(np.int64), int(indices[k]), mask_seed, vocab, mask_prob) for k in batch]
        yield (torch.from_numpy(pad_batch([p[0] for p in pairs], vocab.pad)),
               torch.from_numpy(pad_batch([p[1] for p in pairs], -100)), indices[batch])


def full_sequence_batches(tokens: list[np.ndarray], indices, batch_size: int, vocab: Vocab, width: int = 1024):
    """Compat (official bio-coreset): unmasked inputs padded to `width`, every position a label, pad
    included, in pool order."""
    import torch

    indices = np.asarray(indices)
    for start in range(0, len(tokens), batch_size):
        rows = [t.astype(np.int64)[:width] for t in tokens[start : start + batch_size]]
        padded = np.full((len(rows), width), vocab.pad, dtype=np.int64)
        for i, r in enumerate(rows):
            padded[i, : len(r)] = r
        x = torch.from_numpy(padded)
        yield x, x.clone(), indices[start : start + batch_size]


def residue_entropy(seqs) -> float:
    """Entropy (nats) of the residue frequencies of a set of sequences: the MLM loss of a model that
    predicts every masked residue from those frequencies alone."""
    counts = collections.Counter()
    for s in seqs:
        counts.update(s)
    p = np.array(list(counts.values()), dtype=np.float64)
    p /= p.sum()
    return float(-(p * np.log(p)).sum())
