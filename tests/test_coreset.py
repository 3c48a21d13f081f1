"""The select stage: score files in, coreset folders out (ids.txt, indices.npy, coreset.fasta, manifest.json)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from corelib import selection
from corelib.data import dataset_path, load_pool, read_fasta
from corelib.files import sha256_file
from corelib.selection import read_scores
from corelib.selection.files import read_coreset, write_scores


@pytest.fixture
def scored(tmp_path):
    """The first 300 sequences of the real RNA demo pool, with synthetic scores (the scorer is separate)."""
    pool = load_pool("rna_demo", "rna", limit=300)
    fasta = tmp_path / "pool.fa"
    fasta.write_text("".join(f">{r.id} source={r.source} family={r.family}\n{r.seq}\n" for r in pool.itertuples()))
    rng = np.random.default_rng(0)
    df = pool[["id", "index", "length"]].assign(score=rng.lognormal(size=300), loss=rng.normal(2, 0.3, 300))
    write_scores(df, {"fasta": str(fasta), "modality": "rna"}, tmp_path / "scores")
    return tmp_path, df


@pytest.mark.parametrize("method", ["random", "topk", "bottomk", "cci", "cci-quantile", "cci-official", "length", "band"])
def test_select_writes_a_consistent_coreset_folder(cli, scored, method):
    tmp, df = scored
    status, out, err = cli("select", "--scores", tmp / "scores" / "scores.parquet", "--method", method,
                           "--budget", 40, "--out", tmp / "core", "--strata", 10)
    assert status == 0, err
    indices, manifest = read_coreset(tmp / "core")
    ids = (tmp / "core" / "ids.txt").read_text().split()
    fasta_ids = [r.id for r in read_fasta(tmp / "core" / "coreset.fasta", "rna")]
    assert ids == fasta_ids == df["id"].to_numpy()[indices].tolist()
    assert manifest["method"] == method and manifest["scores_sha256"] == sha256_file(tmp / "scores" / "scores.parquet")
    if method != "cci-official":
        assert len(indices) == 40
    if method == "cci":
        assert indices.tolist() == selection.cci(df["score"].to_numpy(), 40, 0.05, 10, 0).tolist()
    if method == "topk":
        assert set(indices) == set(np.argsort(-df["score"].to_numpy())[:40])


def test_rate_and_seed_are_recorded(cli, scored):
    tmp, _ = scored
    status, _, _ = cli("select", "--scores", tmp / "scores", "--method", "cci", "--rate", 0.9, "--seed", 3,
                       "--out", tmp / "c")
    manifest = json.loads((tmp / "c" / "manifest.json").read_text())
    assert status == 0 and manifest["budget"] == 30 and manifest["seed"] == 3 and manifest["parameters"]["rate"] == 0.9


@pytest.mark.apt
def test_cluster_capped_selection_with_mmseqs2(cli, scored):
    tmp, df = scored
    status, out, err = cli("select", "--scores", tmp / "scores", "--method", "cluster", "--budget", 20, "--cap", 1,
                           "--min-seq-id", 0.9, "--out", tmp / "clu")
    assert status == 0, err
    from corelib.data import mmseqs_clusters

    clusters = mmseqs_clusters(tmp / "pool.fa", 0.9).set_index("id")["cluster"]
    picked_ids = (tmp / "clu" / "ids.txt").read_text().split()
    assert clusters.nunique() > 20 and clusters.loc[picked_ids].is_unique   # one pick per cluster


@pytest.mark.parametrize("args, expect", [
    (["--budget", 301], "larger than the pool"),
    (["--budget", 290], "left after the hard cutoff"),
    (["--budget", 0], "--budget: '0' must be >= 1"),
    (["--rate", 1.5], "--rate: '1.5' must be < 1"),
    (["--budget", 10, "--hard-cutoff", 1.0], "--hard-cutoff: '1.0' must be < 1"),
])
def test_bad_budgets_are_one_line_exit_2(cli, scored, args, expect):
    tmp, _ = scored
    status, _, err = cli("select", "--scores", tmp / "scores", "--method", "cci", "--out", tmp / "x", *args)
    assert status == 2 and err.count("\n") == 1 and expect in err
    assert not (tmp / "x" / "indices.npy").exists()


def test_bad_score_files_are_one_line_exit_2(cli, scored, tmp_path):
    tmp, df = scored
    nan = df.assign(score=df["score"].where(df.index != 5, np.nan))
    write_scores(nan, {"fasta": str(tmp / "pool.fa"), "modality": "rna"}, tmp / "nan")
    write_scores(df.drop(columns="score"), {}, tmp / "nocol")
    (tmp / "junk").mkdir()
    (tmp / "junk" / "scores.parquet").write_bytes(b"not parquet")
    cases = {tmp / "nan": "is NaN/Inf", tmp / "nocol": "missing column(s) score", tmp / "junk": "not a readable parquet",
             tmp / "none": "score file not found"}
    for path, expect in cases.items():
        status, _, err = cli("select", "--scores", path, "--method", "topk", "--budget", 5, "--out", tmp / "o")
        assert status == 2 and err.count("\n") == 1 and expect in err, (path, err)


def test_a_fasta_that_does_not_match_the_scores_is_refused(cli, scored):
    tmp, df = scored
    status, _, err = cli("select", "--scores", tmp / "scores", "--method", "topk", "--budget", 5, "--out", tmp / "o",
                         "--fasta", dataset_path("protein_demo"), "--modality", "protein")
    assert status == 2 and "wrong FASTA for these scores" in err


def test_scores_round_trip(scored):
    tmp, df = scored
    back, meta = read_scores(tmp / "scores")
    pd.testing.assert_frame_equal(back, df.reset_index(drop=True))
    assert meta["modality"] == "rna"


def test_reading_only_the_columns_a_method_needs(tmp_path):
    """read_scores(extra=...) keeps id, index, length, score and the named columns the file has, with the same
    values as a full read (the select stage reads no more of a large table than its method uses)."""
    frame = pd.DataFrame({"id": ["a", "b", "c"], "index": [0, 1, 2], "length": [5, 6, 7], "score": [0.3, 0.1, 0.2],
                          "loss": [1.0, 2.0, 3.0], "score_layer_00": [0.1, 0.1, 0.1]})
    write_scores(frame, {}, tmp_path)
    full, _ = read_scores(tmp_path)
    some, _ = read_scores(tmp_path, extra=("loss", "token_score"))
    assert list(some.columns) == ["id", "index", "length", "score", "loss"]
    pd.testing.assert_frame_equal(some, full[list(some.columns)])
