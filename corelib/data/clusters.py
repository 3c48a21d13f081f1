"""Sequence clusters with MMseqs2 (Debian package `mmseqs2`), for cluster-capped selection and leakage checks."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from corelib.config import cache_dir
from corelib.errors import InputError


def mmseqs_binary() -> tuple[str, dict]:
    """`mmseqs` from PATH, else the Debian package unpacked in the cache (the best SIMD build this CPU has)."""
    found = shutil.which("mmseqs")
    if found:
        return found, dict(os.environ)
    from corelib.data.debian import fetch_packages

    fetch_packages(["mmseqs2", "libgzstream0"])
    root = cache_dir() / "debian" / "root"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    simd = next((s for s in ("avx2", "avx", "sse4.1", "ssse3", "sse3") if s in flags), "plain")
    binary = root / "mmseqs2" / "usr" / "bin" / f"mmseqs-{simd}"
    env = dict(os.environ, LD_LIBRARY_PATH=str(root / "libgzstream0" / "usr" / "lib" / "x86_64-linux-gnu"))
    return str(binary), env


def mmseqs_clusters(fasta, min_seq_id: float = 0.5, coverage: float = 0.8, threads: int = 2,
                    mode: str = "linclust", cov_mode: int = 0) -> pd.DataFrame:
    """Cluster a FASTA with MMseqs2; returns columns id, cluster (representative id).

    `linclust` (default) is MMseqs2's linear-time clustering, the one meant for corpora of millions of
    sequences (seconds here); `cluster` is the more sensitive cascaded search (it allocated 8 GB and
    25 s for 300 rRNAs here, and found 222 clusters where linclust found 223 at 90% identity).
    `cov_mode` is MMseqs2's: 0 both sequences covered, 2 the member covered (a fragment joins its source).
    """
    if not 0 < min_seq_id <= 1:
        raise InputError(f"min_seq_id must lie in (0, 1], got {min_seq_id}")
    if mode not in ("linclust", "cluster"):
        raise InputError(f"MMseqs2 mode must be linclust or cluster, got {mode!r}")
    binary, env = mmseqs_binary()
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "clu"
        proc = subprocess.run([binary, f"easy-{mode}", str(fasta), str(prefix), str(Path(tmp) / "work"),
                               "--min-seq-id", str(min_seq_id), "-c", str(coverage), "--cov-mode", str(cov_mode),
                               "--threads", str(threads),
                               "-v", "1"], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise InputError(f"{fasta}: mmseqs easy-{mode} failed: {proc.stderr.strip().splitlines()[-1:]}")
        table = pd.read_csv(f"{prefix}_cluster.tsv", sep="\t", header=None, names=["cluster", "id"])
    return table[["id", "cluster"]]


# The held-out split per modality (corelib.experiment.heldout): clusters of whole sequences, proteins as UniRef50
# clusters them (50% identity, 80% coverage), RNA at 80% identity and 80% coverage, which groups the near-identical
# amplicon reads (BioMarKs 18S-V4) and the copies of one Rfam family's sequence; and what counts as a near
# duplicate of an evaluated window (a pool sequence holding it at `duplicate_id` identity over 80% of it). Homologs
# below that identity stay in training, as across UniRef50 clusters: predicting a residue from a related
# sequence's context is what a masked LM learns; copying a near-identical one is not.
SPLIT_CLUSTERING = {"protein": {"min_seq_id": 0.5, "coverage": 0.8, "duplicate_id": 0.9},
                    "rna": {"min_seq_id": 0.8, "coverage": 0.8, "duplicate_id": 0.95}}


def _write_fasta(path: Path, ids, seqs) -> None:
    with open(path, "w") as fh:
        for i, s in zip(ids, seqs):
            fh.write(f">{i}\n{s}\n")


def pool_clusters(ids: list[str], seqs: list[str], modality: str, cache_dir: Path | None = None,
                  cache_key: str = "") -> np.ndarray:
    """Cluster label (0..K-1, numbered by first member) of each of a pool's sequences, MMseqs2 linclust at the
    modality's `SPLIT_CLUSTERING`; cached in `cache_dir` under `cache_key` (the pool's hash) when given (Section 4)."""
    params = SPLIT_CLUSTERING[modality]
    cache = None
    if cache_dir is not None:
        tag = f"{cache_key}_{modality}_{len(ids)}_{params['min_seq_id']}_{params['coverage']}"
        cache = Path(cache_dir) / f"{tag}.npy"
        if cache.exists():
            labels = np.load(cache)
            if labels.shape == (len(ids),):
                return labels
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "pool.fa"
        _write_fasta(fasta, ids, seqs)
        table = mmseqs_clusters(fasta, params["min_seq_id"], params["coverage"])
    rep = dict(zip(table["id"], table["cluster"]))
    reps = [rep.get(i, i) for i in ids]
    first: dict[str, int] = {}
    labels = np.array([first.setdefault(r, len(first)) for r in reps], dtype=np.int64)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = cache.with_name(cache.name + ".tmp.npy")
        np.save(tmp_path, labels)
        os.replace(tmp_path, cache)
    return labels


def mmseqs_neighbours(query_ids, query_seqs, target_ids, target_seqs, modality: str, threads: int = 2) -> pd.DataFrame:
    """Target sequences that hold a near duplicate of a query (MMseqs2 easy-search at the modality's
    `duplicate_id`, the query covered to the split coverage): columns query, target, identity (Section 4)."""
    params = SPLIT_CLUSTERING[modality]
    binary, env = mmseqs_binary()
    with tempfile.TemporaryDirectory() as tmp:
        q, t, out = Path(tmp) / "q.fa", Path(tmp) / "t.fa", Path(tmp) / "hits.m8"
        _write_fasta(q, query_ids, query_seqs)
        _write_fasta(t, target_ids, target_seqs)
        cmd = [binary, "easy-search", str(q), str(t), str(out), str(Path(tmp) / "work"), "--min-seq-id",
               str(params["duplicate_id"]), "-c", str(params["coverage"]), "--cov-mode", "2", "--threads", str(threads),
               "--format-output", "query,target,fident", "-v", "1"]
        if modality == "rna":
            cmd += ["--search-type", "3"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise InputError(f"mmseqs easy-search failed: {proc.stderr.strip().splitlines()[-1:]}")
        if not out.exists() or out.stat().st_size == 0:
            return pd.DataFrame(columns=["query", "target", "identity"])
        hits = pd.read_csv(out, sep="\t", header=None, names=["query", "target", "identity"], dtype={0: str, 1: str})
    return hits[hits["query"] != hits["target"]].drop_duplicates(["query", "target"]).reset_index(drop=True)
