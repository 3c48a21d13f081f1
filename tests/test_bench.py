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
