"""FASTA streaming and validation (one clear line per bad record), residue alphabets, GC content.

Sequences are read with Biopython's `SimpleFastaParser` over a line stream that counts lines, so that
every error names the file, the line and the record id.
"""
from __future__ import annotations

import collections
import gzip
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from Bio.SeqIO.FastaIO import SimpleFastaParser

from corelib.errors import InputError

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


def looks_nucleotide(seq: str) -> bool:
    """A sequence of 20 or more letters all in ACGTUN: refused as a protein (Section 4 pools)."""
    return len(seq) >= 20 and set(seq) <= set("ACGTUN")


def _check_letters(path: Path, rec_id: str, line: int, seq: str, modality: str) -> None:
    letters = RNA_LETTERS if modality == "rna" else PROTEIN_LETTERS
    bad = set(seq) - letters
    if modality == "protein" and not bad and looks_nucleotide(seq):
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


def read_fasta(path, modality: str | None = None, unique_ids: bool = True) -> Iterator[Record]:
    """Stream validated, normalized records from a plain or gzip FASTA (the pool format of Fig. 1/DESIGN).
    `unique_ids=False` leaves the duplicate-id check to the caller (it keeps a set of every id; the token
    store checks from its id arrays instead)."""
    path = Path(path)
    if modality is not None and modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; choose rna or protein")
    headers: collections.deque = collections.deque()
    count = 0
    for rec in _parse(_lines(path, headers, {"line": 0}), headers, path, modality, set() if unique_ids else None):
        count += 1
        yield rec
    if count == 0:
        raise InputError(f"{path}: no FASTA records (empty file)")


def _parse(lines, headers: collections.deque, path: Path, modality: str | None, seen: set | None) -> Iterator[Record]:
    """Records of FASTA text lines; `headers` holds the file line of each header in turn (for messages)."""
    for title, seq in SimpleFastaParser(lines):
        line = headers.popleft()
        parts = title.split(None, 1)
        if not parts or title[:1].isspace():
            raise InputError(f"{path}:{line}: empty record id in header")
        rec_id = parts[0]
        desc = parts[1] if len(parts) > 1 else ""
        if not seq:
            raise InputError(f"{path}:{line}: record {rec_id!r} has a header but no sequence")
        if seen is not None:
            if rec_id in seen:
                raise InputError(f"{path}:{line}: duplicate record id {rec_id!r}")
            seen.add(rec_id)
        if modality is not None:
            seq = normalize(seq, modality)
            _check_letters(path, rec_id, line, seq, modality)
        yield Record(rec_id, desc, seq, line, dict(_DESC_FIELD.findall(desc)))


def records_at(path, positions, modality: str | None = None) -> Iterator[tuple[int, Record]]:
    """(position, record) of the records at the given 0-based positions of a FASTA, in file order: the lines of
    the others are only counted (no parse, no Python object per record), the wanted ones are parsed and checked
    as `read_fasta` does. For a pool already read once (its token store, its scores)."""
    path = Path(path)
    wanted = np.unique(np.asarray(positions, dtype=np.int64))
    if wanted.size == 0:
        return
    k, j, n, lines, start = -1, 0, 0, None, 0
    with _open_binary(path) as fh:
        for n, raw in enumerate(fh, start=1):
            if raw.startswith(b">"):
                if lines is not None:
                    yield _one_record(path, wanted[j - 1], start, lines, modality)
                    lines = None
                    if j == wanted.size:
                        return
                k += 1
                if k == wanted[j]:
                    lines, start = [], n
                    j += 1
            if lines is not None:
                try:
                    lines.append(raw.decode("ascii"))
                except UnicodeDecodeError:
                    raise InputError(f"{path}:{n}: binary or non-ASCII data, not a FASTA file") from None
    if lines is not None:
        yield _one_record(path, wanted[j - 1], start, lines, modality)


def _one_record(path: Path, position: int, line: int, lines: list[str], modality) -> tuple[int, Record]:
    return int(position), next(_parse(iter(lines), collections.deque([line]), path, modality, None))


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


def gc_content(seq: str) -> float:
    """Fraction of G+C among unambiguous nucleotides (0 when none)."""
    acgu = sum(seq.count(c) for c in "ACGU")
    return (seq.count("G") + seq.count("C")) / acgu if acgu else 0.0
