"""Score files (`DIR/scores.parquet` + `DIR/scores.json`) and coreset folders (`coreset.fasta`, `ids.txt`,
`manifest.json`, then `indices.npy`, written last: its presence marks a finished coreset). A coreset's manifest
records the pool it indexes (`pool_record`), and reading a coreset for a pool checks it (`check_pool`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from corelib.errors import InputError, warn
from corelib.files import atomic_write, read_json, read_npy, save_json, save_npy, sha256_file

SCORE_COLUMNS = ("id", "index", "length", "score")


def write_scores(df: pd.DataFrame, meta: dict, out_dir) -> Path:
    """Write scores.parquet and scores.json atomically (temp file + rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "scores.parquet"
    atomic_write(path, lambda p: df.to_parquet(p, index=False))
    save_json(out_dir / "scores.json", meta)
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
    meta = read_json(meta_path, "score file record") if meta_path.exists() else {}
    return df, meta


def pool_record(fasta, modality: str, scores: pd.DataFrame, n_pool: int | None = None) -> dict:
    """The pool a coreset indexes (Section 3.3): the FASTA as named (a data set name or a path), its sha256 and
    size in bytes, the modality, its sequence count and the first and last scored (pool index, id)."""
    path = Path(fasta)
    index, ids = scores["index"].to_numpy(), scores["id"].to_numpy()
    return {"fasta": str(fasta), "sha256": sha256_file(path), "bytes": path.stat().st_size, "modality": modality,
            "sequences": int(len(scores) if n_pool is None else n_pool),
            "first": [int(index[0]), str(ids[0])], "last": [int(index[-1]), str(ids[-1])]}


def check_pool(path, manifest: dict, fasta, modality: str) -> None:
    """Refuse a coreset selected from another pool than `fasta` (another sha256 or modality), naming both pools;
    an older coreset whose manifest records no pool is read as it is, with one warning line (Section 3.3)."""
    pool = manifest.get("pool")
    if not isinstance(pool, dict):
        if manifest.get("modality") not in (None, modality):
            raise InputError(f"{path}: selected from a {manifest['modality']} pool ({manifest.get('fasta')}), not "
                             f"from the {modality} pool {fasta}; select a coreset from this pool")
        warn(f"{path}: manifest.json does not record the pool it was selected from (an older coreset); "
             f"assuming {fasta}")
        return
    digest = sha256_file(fasta)
    if pool.get("modality") != modality or pool.get("sha256") != digest:
        raise InputError(f"{path}: selected from the {pool.get('modality')} pool {pool.get('fasta')} "
                         f"({pool.get('sequences')} sequences, sha256 {str(pool.get('sha256'))[:12]}), not from the "
                         f"{modality} pool {fasta} (sha256 {digest[:12]}); select a coreset from this pool, or "
                         f"give --fasta {pool.get('fasta')} --modality {pool.get('modality')}")


def write_coreset(out_dir, scores: pd.DataFrame, rows: np.ndarray, fasta, modality: str, manifest: dict) -> Path:
    """Write coreset.fasta (the selected records, found by position in the pool without parsing the others, their
    ids checked against the score file), ids.txt, manifest.json (with the `pool_record` when it has none) and last
    indices.npy (pool positions), each atomically. Nothing per pool sequence is held beyond the score table's own
    columns."""
    from corelib.data.fasta import records_at

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if "pool" not in manifest:
        manifest = {**manifest, "pool": pool_record(fasta, modality, scores, manifest.get("n_pool"))}
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

    atomic_write(out_dir / "coreset.fasta", fasta_out)
    atomic_write(out_dir / "ids.txt", lambda p: p.write_text("".join(f"{i}\n" for i in ids)))
    save_json(out_dir / "manifest.json", manifest)
    save_npy(out_dir / "indices.npy", pool_idx)   # last: a coreset folder with indices.npy is finished
    return out_dir


def read_coreset(path, pool: tuple | None = None) -> tuple[np.ndarray, dict]:
    """Indices and manifest of a coreset folder (what the pretraining stage reads); with `pool` = (fasta,
    modality), a coreset selected from another pool is refused (`check_pool`). A missing, empty, truncated or
    foreign file is one InputError naming it."""
    path = Path(path)
    if not (path / "indices.npy").exists():
        raise InputError(f"{path}: not a coreset folder (no indices.npy)")
    manifest = read_json(path / "manifest.json", "coreset manifest")
    indices = read_npy(path / "indices.npy", "coreset index file")
    if indices.size and indices.min() < 0:
        raise InputError(f"{path / 'indices.npy'}: holds a negative pool index")
    if pool is not None:
        check_pool(path, manifest, *pool)
    return indices, manifest
