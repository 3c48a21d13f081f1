"""Readers for the benchmark files of the tasks whose data are not available offline (Tables 1, 2b, 2d, 3):
BEACON's Modification, CRISPR On-Target and Distance Map folders, RNA-FM's RBP (PrismNet) tables and
PEER's PPI-affinity LMDBs. A user puts the files where data_manifests/<name>.yaml says; the experiment
then evaluates those tasks too. Each reader gives one table: split, seq (seq2 for pairs), labels.

"""
from __future__ import annotations

import csv
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from corelib.errors import InputError

SPLITS = {"train": "train", "val": "valid", "valid": "valid", "test": "test"}


@dataclass(frozen=True)
class Benchmark:
    """An external benchmark: its manifest name, modality and reader."""

    manifest: str
    modality: str
    reader: str


def _rows(path: Path, header: bool):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[1:] if header else rows, 2 if header else 1


def _split_files(folder: Path, pattern: str) -> list[tuple[str, Path]]:
    found = [(SPLITS[s], folder / pattern.format(s)) for s in ("train", "val", "valid", "test")
             if (folder / pattern.format(s)).exists()]   # BEACON names it val, PEER valid
    if not any(split == "test" for split, _ in found) or not any(split == "train" for split, _ in found):
        raise InputError(f"{folder}: needs {pattern.format('train')} and {pattern.format('test')}")
    return found


def read_modification(folder) -> pd.DataFrame:
    """BEACON Modification: {train,val,test}.csv without header, a sequence then 12 0/1 labels per row."""
    out = []
    for split, path in _split_files(Path(folder), "{}.csv"):
        rows, first = _rows(path, header=False)
        for k, row in enumerate(rows):
            if len(row) != 13 or any(v not in ("0", "1") for v in row[1:]):
                raise InputError(f"{path}:{first + k}: expected a sequence and 12 labels of 0/1, got {len(row)} fields")
            out.append({"split": split, "seq": row[0], "labels": np.array(row[1:], dtype=np.int64)})
    return pd.DataFrame(out)


def read_crispr_on(folder) -> pd.DataFrame:
    """BEACON CRISPR On-Target: {train,val,test}.csv with a header, columns sequence, efficiency."""
    out = []
    for split, path in _split_files(Path(folder), "{}.csv"):
        rows, first = _rows(path, header=True)
        for k, row in enumerate(rows):
            try:
                out.append({"split": split, "seq": row[0], "label": float(row[1])})
            except (IndexError, ValueError):
                raise InputError(f"{path}:{first + k}: expected sequence,efficiency") from None
    return pd.DataFrame(out)


def read_distance_map(folder) -> pd.DataFrame:
    """BEACON Distance Map: {train,val,test}.csv with a header, columns id, sequence; the L x L matrix of
    each id in distance_map/<id>.npy beside them."""
    folder = Path(folder)
    out = []
    for split, path in _split_files(folder, "{}.csv"):
        rows, first = _rows(path, header=True)
        for k, row in enumerate(rows):
            npy = folder / "distance_map" / f"{row[0]}.npy"
            if not npy.exists():
                raise InputError(f"{path}:{first + k}: no distance map {npy} for id {row[0]!r}")
            d = np.load(npy).astype(np.float32)
            if d.shape != (len(row[1]), len(row[1])):
                raise InputError(f"{npy}: shape {d.shape} does not match the {len(row[1])}-nt sequence of {row[0]!r}")
            out.append({"split": split, "id": row[0], "seq": row[1], "distances": d})
    return pd.DataFrame(out)


def read_rbp(folder) -> pd.DataFrame:
    """RBP interaction (RNA-FM / PrismNet): {train,test}.tsv, tab-separated with a header holding Seq
    and label columns (others, e.g. Type, name, icshape, Score, are ignored)."""
    out = []
    for split, path in _split_files(Path(folder), "{}.tsv"):
        df = pd.read_csv(path, sep="\t")
        cols = {c.lower(): c for c in df.columns}
        if "seq" not in cols or "label" not in cols:
            raise InputError(f"{path}:1: header needs Seq and label columns, has {', '.join(df.columns)}")
        bad = ~df[cols["label"]].isin([0, 1])
        if bad.any():
            raise InputError(f"{path}:{int(np.argmax(bad)) + 2}: label must be 0 or 1")
        out.append(pd.DataFrame({"split": split, "seq": df[cols["seq"]], "label": df[cols["label"]].astype(int)}))
    return pd.concat(out, ignore_index=True)


def read_ppi_affinity(folder) -> pd.DataFrame:
    """PEER PPI affinity: ppi_affinity_{train,valid,test}.lmdb (TAPE layout: key 'num_examples', then
    keys '0', '1', ... holding pickled dicts with primary_1, primary_2 and interaction = pK_d)."""
    import lmdb

    out = []
    for split, path in _split_files(Path(folder), "ppi_affinity_{}.lmdb"):
        env = lmdb.open(str(path), readonly=True, lock=False, subdir=path.is_dir())
        with env.begin() as txn:
            raw = txn.get(b"num_examples")
            if raw is None:
                raise InputError(f"{path}: no 'num_examples' key: not a TAPE/PEER LMDB")
            for i in range(pickle.loads(raw)):
                item = pickle.loads(txn.get(str(i).encode()))
                if not {"primary_1", "primary_2", "interaction"} <= set(item):
                    raise InputError(f"{path}: record {i} lacks primary_1 / primary_2 / interaction")
                out.append({"split": split, "seq": item["primary_1"], "seq2": item["primary_2"],
                            "label": float(np.asarray(item["interaction"]).ravel()[0])})
        env.close()
    return pd.DataFrame(out)

BENCHMARKS = {
    "Modif": Benchmark("beacon_modification", "rna", "read_modification"),
    "CRI-On": Benchmark("beacon_crispr_on", "rna", "read_crispr_on"),
    "DistMap": Benchmark("beacon_distance_map", "rna", "read_distance_map"),
    "RBP": Benchmark("rnafm_rbp", "rna", "read_rbp"),
    "Aff": Benchmark("peer_ppi_affinity", "protein", "read_ppi_affinity"),
}


def benchmark_folder(task: str) -> Path:
    """Where the files of an external benchmark go (data_cache/<expected_path> of its manifest)."""
    from corelib.config import cache_dir
    from corelib.data.manifests import load_manifest

    return cache_dir() / load_manifest(BENCHMARKS[task].manifest)["expected_path"]


def load_benchmark(task: str, folder=None) -> pd.DataFrame:
    """The table of an external benchmark from `folder` (default: where its manifest says)."""
    if task not in BENCHMARKS:
        raise InputError(f"unknown benchmark {task!r}; known: {', '.join(BENCHMARKS)}")
    folder = Path(folder) if folder else benchmark_folder(task)
    if not folder.exists():
        from corelib.data.manifests import load_manifest

        how = load_manifest(BENCHMARKS[task].manifest)["how_to_get"].strip()
        raise InputError(f"{folder}: benchmark {task} is not here; {how}")
    return globals()[BENCHMARKS[task].reader](folder)
