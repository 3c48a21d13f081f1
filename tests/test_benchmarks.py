"""corelib.benchmarks: each external benchmark's real file format is read from a small fixture in that
format; bad rows are one clear error naming file and line; placed files join the experiment's tasks."""
from __future__ import annotations

import csv
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from corelib.data.benchmarks import (
    BENCHMARKS,
    load_benchmark,
    read_crispr_on,
    read_distance_map,
    read_modification,
    read_ppi_affinity,
    read_rbp,
)
from corelib.errors import InputError

FIX = Path(__file__).parent / "fixtures" / "benchmarks"


def _csv(path, header):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[1:] if header else rows


def test_beacon_modification_rows_and_labels():
    df = read_modification(FIX / "beacon/Modification")
    raw = _csv(FIX / "beacon/Modification/test.csv", header=False)
    test = df[df["split"] == "test"]
    assert df["split"].value_counts().to_dict() == {"train": 12, "test": 8, "valid": 4}
    assert test["seq"].tolist() == [r[0] for r in raw]
    assert np.array_equal(np.stack(test["labels"].to_list()), np.array([r[1:] for r in raw], dtype=int))


def test_beacon_crispr_on_target_values():
    df = read_crispr_on(FIX / "beacon/CRISPROnTarget")
    raw = _csv(FIX / "beacon/CRISPROnTarget/train.csv", header=True)
    assert df.loc[df["split"] == "train", "label"].tolist() == [float(r[1]) for r in raw]


def test_beacon_distance_maps_match_their_sequences():
    df = read_distance_map(FIX / "beacon/DistanceMap")
    row = df[df["id"] == "train_0"].iloc[0]
    assert row["distances"].shape == (len(row["seq"]),) * 2 and np.isnan(row["distances"][0, 5])
    assert np.allclose(row["distances"], np.load(FIX / "beacon/DistanceMap/distance_map/train_0.npy"), equal_nan=True)


def test_rbp_table_reads_seq_and_label_columns():
    df = read_rbp(FIX / "rbp")
    assert set(df["label"]) == {0, 1} and df["seq"].str.len().eq(31).all() and len(df) == 20


def _write_lmdb(folder: Path, records: list[dict]) -> None:
    import lmdb

    env = lmdb.open(str(folder), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"num_examples", pickle.dumps(len(records)))
        for i, rec in enumerate(records):
            txn.put(str(i).encode(), pickle.dumps(rec))
    env.close()


def test_peer_ppi_affinity_lmdb_in_tape_layout(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "valid", "test"):
        _write_lmdb(tmp_path / f"ppi_affinity_{split}.lmdb",
                    [{"primary_1": "MKV" * (i + 2), "primary_2": "GAVL" * (i + 1), "interaction": float(rng.uniform(4, 10))}
                     for i in range(4)])
    df = read_ppi_affinity(tmp_path)
    assert len(df) == 12 and set(df["split"]) == {"train", "valid", "test"}
    assert df.iloc[1][["seq", "seq2"]].tolist() == ["MKV" * 3, "GAVL" * 2] and df["label"].between(4, 10).all()


@pytest.mark.parametrize("reader,folder,file,bad,expect", [
    (read_modification, "beacon/Modification", "test.csv", "ACGU,0,1\n", "test.csv:3: expected a sequence and 12 labels"),
    (read_crispr_on, "beacon/CRISPROnTarget", "test.csv", "ACGU,high\n", "test.csv:10: expected sequence,efficiency"),
    (read_rbp, "rbp", "test.tsv", "A\tx\tACGU\t0\t1\t7\n", "test.tsv:10: label must be 0 or 1"),
])
def test_a_bad_row_names_file_and_line(tmp_path, reader, folder, file, bad, expect):
    shutil.copytree(FIX / folder, tmp_path / "b")
    path = tmp_path / "b" / file
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(2 if reader is read_modification else 9, bad)
    path.write_text("".join(lines))
    with pytest.raises(InputError, match=expect.replace(".", r"\.")):
        reader(tmp_path / "b")


def test_a_missing_benchmark_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_CACHE", str(tmp_path))
    for task in BENCHMARKS:
        with pytest.raises(InputError, match=str(tmp_path / "benchmarks")):
            load_benchmark(task)


def test_placed_benchmarks_join_the_downstream_evaluation(tmp_path, monkeypatch):
    from corelib.config import get_preset
    from corelib.evaluation import evaluate_encoder
    from corelib.models import build_model

    shutil.copytree(FIX / "beacon/Modification", tmp_path / "benchmarks/beacon/Modification")
    shutil.copytree(FIX / "beacon/CRISPROnTarget", tmp_path / "benchmarks/beacon/CRISPROnTarget")
    shutil.copytree(FIX / "beacon/DistanceMap", tmp_path / "benchmarks/beacon/DistanceMap")
    shutil.copytree(FIX / "rbp", tmp_path / "benchmarks/rbp")
    monkeypatch.setenv("CORELIB_CACHE", str(tmp_path))
    preset = get_preset("smoke", {"downstream.epochs": 1})
    ev = evaluate_encoder(build_model("rna", "tiny"), "rna", preset, tasks={"Modif", "CRI-On", "DistMap", "RBP"})
    df = ev.metrics
    primary = {(t, m) for t, m, p in zip(df["task"], df["metric"], df["primary"]) if p}
    base = {("Modif", "AUC"), ("CRI-On", "SC"), ("DistMap", "R2"), ("RBP", "ACC")}
    axes = {(f"{t} ({v})", m) for t, m in base for v in ("fine-tuned", "+composition")
            if (t, v) not in {("DistMap", "fine-tuned"), ("DistMap", "+composition"), ("RBP", "fine-tuned")}}
    assert primary == base | axes                                       # B.1's fine-tuned tasks, sequence tasks'
    #                                                                     incremental probes: their own axes
    got = {(t, m) for t, m in zip(df["task"], df["metric"])}
    assert got >= {("CRI-On", "MSE"), ("DistMap", "SC"), ("DistMap", "MAE"), ("DistMap", "MSE"), ("RBP", "AUC"),
                   ("RBP", "AUPR")}                                     # the paper's other columns, secondary
    assert df["value"].notna().all()
    by_items = ev.items.groupby("task").apply(lambda g: g["num"].sum() / g["den"].sum())
    for task, metric in primary:                                        # per-item rows reproduce each primary
        value = df[(df["task"] == task) & (df["metric"] == metric)]["value"].iloc[0]
        assert by_items[task] == pytest.approx(value, rel=1e-6, abs=1e-6)
