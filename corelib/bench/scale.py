"""The scale run, `python -m corelib.bench scale [--pool 2000000] [--score-n 100000] [--select-rows 20000000]`.

Three stages of the pipeline at the sizes users have, each in a fresh process whose wall time and peak RSS
(VmHWM) are printed, and each also at a tenth of its size, so that the growth of peak RSS with the pool shows:

1. the token store build (`data.store.token_store`) of a pool of real RNA sequences, resampled with
   replacement from the full build (`rna_full`) when it is built here, else from the embedded demo pool,
   with ids made unique (`<id>_r<k>`);
2. `python -m corelib score --scope lm_head.dense` on the first `score_n` sequences of that pool (preset demo:
   the tiny model, 130 tokens, D_sub 1,000 with its one-epoch fine-tune), and its tenth from the pool at a
   tenth, so that growth with the pool (same sequences scored) and with the sequences scored show apart;
3. `python -m corelib select --method cci --rate 0.99` over a synthetic score table of `select_rows` rows, whose
   pool FASTA holds as many short real fragments (24 nt) so that the coreset FASTA can be written.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from corelib.bench.timing import measured_process
from corelib.data.fasta import read_fasta
from corelib.data.manifests import dataset_path
from corelib.errors import InputError

FRAGMENT = 24   # residues per record of the selection pool


def source_pool() -> tuple[str, Path]:
    """The pool the scale run resamples: the full RNA build when it is here, else the embedded demo pool."""
    try:
        return "rna_full", dataset_path("rna_full")
    except InputError:
        return "rna_demo", dataset_path("rna_demo")


def write_resampled_pool(source: Path, out: Path, n: int, seed: int = 0) -> dict:
    """A FASTA of n records drawn with replacement from `source` (real sequences), ids made unique (`_r<k>`)."""
    records = [(r.id, r.description, r.seq) for r in read_fasta(source, "rna")]
    picks = np.random.default_rng(seed).integers(0, len(records), size=n)
    residues = 0
    with open(out, "w") as fh:
        for k, i in enumerate(picks):
            rid, desc, seq = records[i]
            fh.write(f">{rid}_r{k} {desc}".rstrip() + f"\n{seq}\n")
            residues += len(seq)
    return {"sequences": n, "residues": residues, "source_sequences": len(records)}


def write_selection_pool(folder: Path, rows: int, seed: int = 0, chunk: int = 1 << 21) -> Path:
    """A score folder for `select`: a synthetic score table of `rows` rows (lognormal scores, the columns an
    lm_head.dense run writes) and its pool FASTA of `rows` real 24-nt fragments of the demo pool, ids s<k>."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    seqs = [r.seq for r in read_fasta(dataset_path("rna_demo"), "rna") if len(r.seq) >= FRAGMENT]
    text = np.frombuffer("".join(seqs).encode(), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    width = len(str(rows - 1))
    fasta = folder / "pool.fa"
    writer = None
    with open(fasta, "wb") as fh:
        for start in range(0, rows, chunk):
            k = np.arange(start, min(start + chunk, rows), dtype=np.int64)
            digits = ((k[:, None] // 10 ** np.arange(width - 1, -1, -1)) % 10 + 48).astype(np.uint8)
            at = rng.integers(0, text.size - FRAGMENT, size=k.size)
            body = text[at[:, None] + np.arange(FRAGMENT)]
            rec = np.concatenate([np.full((k.size, 1), ord(">"), np.uint8), np.full((k.size, 1), ord("s"), np.uint8),
                                  digits, np.full((k.size, 1), 10, np.uint8), body,
                                  np.full((k.size, 1), 10, np.uint8)], axis=1)
            fh.write(rec.tobytes())
            ids = pa.array(np.concatenate([np.full((k.size, 1), ord("s"), np.uint8), digits], axis=1)
                           .view(f"S{width + 1}").ravel()).cast(pa.string())
            score = rng.lognormal(0.0, 1.0, size=k.size)
            masked = np.full(k.size, max(1, round(0.15 * FRAGMENT)), dtype=np.int64)
            table = pa.table({"id": ids, "index": k, "length": np.full(k.size, FRAGMENT, dtype=np.int64),
                              "score": score, "loss": rng.normal(1.3, 0.2, size=k.size), "score_lm_head": score,
                              "masked": masked, "token_score": score * masked})
            writer = writer or pq.ParquetWriter(folder / "scores.parquet", table.schema)
            writer.write_table(table)
    writer.close()
    (folder / "scores.json").write_text(json.dumps({"fasta": str(fasta), "modality": "rna", "score_sign": 1,
                                                    "synthetic": True}, indent=2))
    return folder


def _stage(name: str, argv: list[str], env: dict, size: int, pool: int) -> dict:
    out = measured_process(argv, env)
    return {"stage": name, "size": size, "pool": pool, "wall_s": round(out["wall_s"], 1),
            "peak_rss_mb": round(out["peak_rss_mb"]),
            "command": " ".join(["python", *argv]) if argv[0] == "-m" else "python -c <token_store(...)>"}


def scale_benchmark(pool: int = 2_000_000, score_n: int = 100_000, select_rows: int = 20_000_000, work=None,
                    model: str = "tiny", seed: int = 0, threads: int = 2) -> dict:
    """Each stage at its size and at a tenth of it, in fresh processes with `threads` CPU threads
    (OMP_NUM_THREADS): wall seconds and peak RSS (Sec. 4)."""
    tmp = None if work else tempfile.mkdtemp(prefix="corelib-scale-")
    root = Path(work or tmp)
    root.mkdir(parents=True, exist_ok=True)
    env = {"OMP_NUM_THREADS": str(threads)}
    stores = {size: root / f"tokens_{size}" for size in (pool // 10, pool)}   # built afresh, each in its own
    name, source = source_pool()
    figures = {"source": name, "pool": pool, "score_n": score_n, "select_rows": select_rows, "model": model,
               "threads": threads, "stages": []}
    try:
        for size in (pool // 10, pool):
            fasta = root / f"pool_{size}.fa"
            if not fasta.exists():
                figures[f"pool_{size}"] = write_resampled_pool(source, fasta, size, seed)
            code = (f"from corelib.data.store import token_store; s = token_store({str(fasta)!r}, 'rna', "
                    f"progress=False); print(len(s))")
            shutil.rmtree(stores[size], ignore_errors=True)
            figures["stages"].append(_stage("token store build", ["-c", code],
                                            {**env, "CORELIB_TOKENS": str(stores[size])}, size, size))
        for size, n in ((pool // 10, score_n // 10), (pool, score_n // 10), (pool, score_n)):
            out = root / (f"scores_{n}" if size == pool else f"scores_{n}_pool_{size}")
            shutil.rmtree(out, ignore_errors=True)
            figures["stages"].append(_stage("score --scope lm_head.dense", [
                "-m", "corelib", "score", "--fasta", str(root / f"pool_{size}.fa"), "--modality", "rna", "--preset",
                "demo", "--model", model, "--scope", "lm_head.dense", "--limit", str(n), "--subset-size", "1000",
                "--seed", str(seed), "--out", str(out), "--device", "cpu", "--quiet"],
                {**env, "CORELIB_TOKENS": str(stores[size])}, n, size))
        for rows in (select_rows // 10, select_rows):
            folder = root / f"select_{rows}"
            if not (folder / "scores.json").exists():
                write_selection_pool(folder, rows, seed)
            shutil.rmtree(folder / "coreset", ignore_errors=True)
            figures["stages"].append(_stage("select --method cci --rate 0.99", [
                "-m", "corelib", "select", "--scores", str(folder), "--method", "cci", "--rate", "0.99",
                "--out", str(folder / "coreset")], env, rows, rows))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return figures


def report(f: dict) -> str:
    """The stages' wall time and peak RSS, and peak RSS at ten times the pool (or the rows) over a tenth."""
    lines = [f"pool resampled from {f['source']}; model {f['model']}; {f['threads']} thread(s) per process", "",
             "| stage | pool | size | wall s | peak RSS MB | command |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['stage']} | {s['pool']:,} | {s['size']:,} | {s['wall_s']} | {s['peak_rss_mb']} | `{s['command']}` |"
              for s in f["stages"]]
    lines += ["", "| stage | what grows 10x | peak RSS at 10x / at 1x |", "|---|---|---|"]
    for a, b in zip(f["stages"], f["stages"][1:]):
        if a["stage"] == b["stage"]:
            grows = "rows" if a["stage"].startswith("select") else "pool" if b["pool"] != a["pool"] else "sequences scored"
            lines.append(f"| {a['stage']} | {grows} | {b['peak_rss_mb'] / a['peak_rss_mb']:.2f} |")
    return "\n".join(lines)
