"""Score files (`DIR/scores.parquet` + `DIR/scores.json`) and coreset folders (`indices.npy`, `ids.txt`,
`coreset.fasta.gz`, `manifest.json`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from corelib.errors import InputError
from corelib.files import atomic_write

SCORE_COLUMNS = ("id", "index", "length", "score")


def write_scores(df: pd.DataFrame, meta: dict, out_dir) -> Path:
    """Write scores.parquet and scores.json atomically (temp file + rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "scores.parquet"
    atomic_write(path, lambda p: df.to_parquet(p, index=False))
    atomic_write(out_dir / "scores.json", lambda p: p.write_text(json.dumps(meta, indent=2, sort_keys=True)))
    return path


def score_file(path) -> Path:
    """The parquet file of a score path given as the file or as its folder."""
    path = Path(path)
    return path / "scores.parquet" if path.is_dir() else path


def read_scores(path, extra: tuple | list | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a score file (or its folder); checks the columns, order and finiteness. `extra`: read only the
    required columns plus these (those the file has), instead of every column (a large pool's table)."""
    path = score_file(path)
    if not path.exists():
        raise InputError(f"{path}: score file not found")
    try:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        missing = [c for c in SCORE_COLUMNS if c not in names]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)} (need {', '.join(SCORE_COLUMNS)})")
        wanted = None if extra is None else [c for c in names if c in SCORE_COLUMNS or c in extra]
        df = pd.read_parquet(path, columns=wanted)
    except InputError:
        raise
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{path}: not a readable parquet score file ({type(exc).__name__})") from None
    if len(df) == 0:
        raise InputError(f"{path}: no scores")
    index = df["index"].to_numpy()
    if index[0] < 0 or (len(index) > 1 and np.any(np.diff(index) <= 0)):
        raise InputError(f"{path}: column 'index' must hold increasing pool positions (an unsorted score file)")
    score = df["score"].to_numpy(dtype=float)
    bad = ~np.isfinite(score)
    if bad.any():
        raise InputError(f"{path}: score of id {df['id'].iat[int(np.argmax(bad))]!r} is NaN/Inf")
    meta_path = path.with_name("scores.json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return df, meta


def write_coreset(out_dir, scores: pd.DataFrame, rows: np.ndarray, fasta, modality: str, manifest: dict) -> Path:
    """Write ids.txt, indices.npy (pool positions), coreset.fasta (the selected records, found by position in
    the pool without parsing the others, their ids checked against the score file) and manifest.json, each
    atomically. Nothing per pool sequence is held beyond the score table's own columns."""
    from corelib.data.fasta import records_at

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = np.asarray(rows, dtype=np.int64)
    pool_idx = scores["index"].to_numpy()[rows].astype(np.int64)
    ids = scores["id"].iloc[rows].to_numpy(dtype=object)   # only the selected ids become Python strings
    order = np.argsort(pool_idx, kind="stable")
    first = int(scores["index"].iat[0]), scores["id"].iat[0]

    def fasta_out(tmp: Path) -> None:
        written, k = 0, 0
        with open(tmp, "w") as fh:
            for i, rec in records_at(fasta, np.append(pool_idx, first[0]), modality):
                while k < order.size and pool_idx[order[k]] < i:
                    k += 1
                chosen = k < order.size and pool_idx[order[k]] == i
                expect = ids[order[k]] if chosen else first[1]
                if rec.id != expect:
                    raise InputError(f"{fasta}:{rec.line}: record {rec.id!r} at pool index {i} is not "
                                     f"{expect!r} of the score file: wrong FASTA for these scores")
                if chosen:
                    fh.write(f">{rec.id} {rec.description}".rstrip() + f"\n{rec.seq}\n")
                    written += 1
        if written != len(rows):
            raise InputError(f"{fasta}: holds only {written} of the {len(rows)} selected records")

    def indices_out(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a handle: np.save would append .npy to a .tmp name
            np.save(fh, pool_idx)

    atomic_write(out_dir / "coreset.fasta", fasta_out)
    atomic_write(out_dir / "ids.txt", lambda p: p.write_text("".join(f"{i}\n" for i in ids)))
    atomic_write(out_dir / "indices.npy", indices_out)
    atomic_write(out_dir / "manifest.json", lambda p: p.write_text(json.dumps(manifest, indent=2, sort_keys=True)))
    return out_dir


def read_coreset(path) -> tuple[np.ndarray, dict]:
    """Indices and manifest of a coreset folder (what the pretraining stage reads)."""
    path = Path(path)
    if not (path / "indices.npy").exists():
        raise InputError(f"{path}: not a coreset folder (no indices.npy)")
    return np.load(path / "indices.npy"), json.loads((path / "manifest.json").read_text())
