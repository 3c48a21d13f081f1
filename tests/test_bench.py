"""The scoring benchmark runs end to end and prints every ratio beside its target (no timing is asserted)."""
from __future__ import annotations

import json

import pytest

from corelib.bench import main


@pytest.mark.slow
def test_benchmark_prints_every_ratio_with_its_target(tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert main(["scoring", "--model", "tiny", "--n", "8", "--official-n", "8", "--rss-n", "20",
                 "--max-tokens", "66", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for name, target in [("SDPA / fair-esm unfused attention", ">= 3"), ("all-parameter scorer / training step",
                         ">= 0.9"), ("lm_head.dense scorer / official", ">= 5"), ("naive batch-1 loop", ">= 1"),
                         ("peak RSS 10N / N", "<= 1.1")]:
        line = next(line for line in text.splitlines() if name in line)
        assert line.rstrip().endswith(f"| {target} |"), line
    figures = json.loads(out.read_text())
    assert 0 < figures["bf16_jaccard_topk"] <= 1 and -1 <= figures["bf16_spearman"] <= 1
    assert figures["official_sequences"] == 8


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
