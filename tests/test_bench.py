"""The scoring benchmark runs end to end and prints every ratio beside its target (no timing is asserted)."""
from __future__ import annotations

import json

import pytest

from corelib.bench import main


@pytest.mark.slow
def test_benchmark_prints_every_ratio_with_its_target(tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert main(["scoring", "--model", "tiny", "--n", "8", "--official-n", "6", "--pool-official-n", "5",
                 "--rss-n", "20", "--max-tokens", "66", "--sources", "Rfam,BioMarKs", "--peak-tflops", "1",
                 "--profile", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for name, target in [("SDPA / fair-esm unfused attention, fp32", ">= 3.0"),
                         ("all-parameter scorer / training step", ">= 0.9"),
                         ("lm_head.dense scorer / official vmap(jacrev), pad 1024, same 6 sequences (sources "
                          "Rfam,BioMarKs", ">= 5.0"),
                         ("lm_head.dense scorer / official, whole demo pool, same 5 sequences", "reported"),
                         ("naive batch-1 loop", ">= 1.5"), ("peak RSS 10N / N", "<= 1.1")]:
        line = next(line for line in text.splitlines() if name in line)
        assert line.rstrip().endswith(f"| {target} |"), line
    figures = json.loads(out.read_text())
    assert 0 < figures["bf16_jaccard_topk"] <= 1 and -1 <= figures["bf16_spearman"] <= 1
    assert figures["official_sequences"] == 6 and figures["official_sequences_pool"] == 5
    assert figures["official_sources"] == "Rfam,BioMarKs" and figures["official_sources_pool"] == "all"
    # MFU is 6 x params x padded tokens / step time against the stated peak (1 TFLOP/s)
    step = figures["sequences"] / figures["train_step_seq_s"]
    assert figures["train_mfu"] == pytest.approx(6 * figures["params"] * figures["padded_tokens"] / step / 1e12)
    assert "| all operators |" in text and min(figures["profile_total"]) > 0   # where the time goes, both passes


@pytest.mark.slow
def test_scale_run_builds_scores_and_selects_at_each_size(tmp_path, capsys):
    """The scale run at toy sizes: a resampled pool of real sequences with unique ids, its token store, scores
    of the first sequences, a CCI coreset of floor(n x 0.01) rows of the synthetic table; each stage twice."""
    import numpy as np
    import pandas as pd

    from corelib.bench.scale import source_pool
    from corelib.data import load_pool, read_fasta
    from corelib.data.store import TokenStore

    assert main(["scale", "--pool", "60", "--score-n", "20", "--select-rows", "1000", "--work", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "| token store build | 6 |" in text and "| token store build | 60 |" in text
    name, _ = source_pool()   # the full build where it is built here, else the embedded demo pool
    demo = dict(zip(load_pool(name, "rna")["id"], load_pool(name, "rna")["seq"]))
    records = list(read_fasta(tmp_path / "pool_60.fa", "rna"))
    assert len(records) == 60 and len({r.id for r in records}) == 60
    assert all(r.seq == demo[r.id.rsplit("_r", 1)[0]] for r in records)          # real sequences, resampled
    stores = [TokenStore(p) for size in (6, 60) for p in (tmp_path / f"tokens_{size}").iterdir()]
    assert [len(s) for s in stores] == [6, 60]
    assert len(pd.read_parquet(tmp_path / "scores_20" / "scores.parquet")) == 20
    assert len(pd.read_parquet(tmp_path / "scores_2_pool_6" / "scores.parquet")) == 2   # the tenth, from the tenth
    assert "| score --scope lm_head.dense | pool |" in text and "| sequences scored |" in text
    coreset = (tmp_path / "select_1000" / "coreset" / "ids.txt").read_text().split()
    table = pd.read_parquet(tmp_path / "select_1000" / "scores.parquet")
    assert len(coreset) == 10 and set(coreset) <= set(table["id"]) and np.all(np.diff(table["index"]) == 1)


@pytest.mark.parametrize("argv, says", [(["--modality", "dna"], "--modality"), (["--n", "0"], "--n"),
                                         (["--lr", "-1"], "--lr"), (["--preset", "huge"], "unknown preset 'huge'"),
                                         ([], "not built here")])
def test_pilot_bad_input_is_one_line_exit_2(argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CORELIB_CACHE", str(tmp_path))   # the demo's full pool is not built there
    try:
        status = main(["pilot", "--preset", "demo", *argv])
    except SystemExit as exc:   # a usage error, raised while parsing
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and says in err, err
