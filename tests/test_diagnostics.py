"""Score diagnostics (score-robustness issue): Spearman-Brown by hand, length-decile pick rates by hand,
identity curvature equal to a batch-size-1 autograd oracle, and the `diagnose` verb's table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from corelib.config import get_preset
from corelib.data import get_vocab, load_pool, mlm_mask, tokenize
from corelib.influence import run_scoring
from corelib.influence.score_checks import curvature_sweep, length_decile_rates, spearman_brown
from corelib.models import build_model, per_sequence_loss


def test_spearman_brown_by_hand():
    a, b = np.array([1, 2, 3, 4, 5.0]), np.array([2, 1, 4, 3, 5.0])
    r = 1 - 6 * (1 + 1 + 1 + 1 + 0) / (5 * (25 - 1))         # Spearman from rank differences
    assert spearman_brown(a, b) == pytest.approx(2 * r / (1 + r))


def test_length_decile_rates_by_hand():
    n = 100
    table = pd.DataFrame({"index": np.arange(n), "id": [str(i) for i in range(n)], "length": np.arange(n) + 10,
                          "score": -np.arange(n, dtype=float), "loss": np.zeros(n)})
    rates = length_decile_rates(table, ["topk"], 15).iloc[0]
    # Top-15 by score = the 15 shortest: all of decile 1, half of decile 2, nothing above
    assert rates["decile_1"] == 1.0 and rates["decile_2"] == 0.5 and rates["decile_3"] == 0.0


def test_identity_curvature_is_the_squared_gradient_norm_of_a_batch_one_oracle():
    model = build_model("rna", "tiny", seed=3)
    seqs = load_pool("rna_demo", "rna", limit=6)["seq"]
    toks = tokenize(seqs, "rna", 40)
    vocab = get_vocab("rna")
    from corelib.data import mlm_batches

    fisher = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    sweep = curvature_sweep(model, mlm_batches(toks, np.arange(6), 3, vocab, mask_seed=0), fisher, {"one": 1.0})
    for i, t in enumerate(toks):
        x, y = mlm_mask(t.astype(np.int64), i, 0, vocab)
        model.zero_grad()
        per_sequence_loss(model(torch.from_numpy(x)[None]), torch.from_numpy(y)[None]).sum().backward()
        g2 = sum(float(p.grad.double().square().sum()) for p in model.parameters() if p.grad is not None)
        assert sweep.loc[i, "identity"] == pytest.approx(g2, rel=1e-5)
        assert sweep.loc[i, "one"] == pytest.approx(g2 / 2, rel=1e-5)        # (F + lambda) = 2 everywhere


@pytest.mark.slow
def test_diagnose_verb_writes_the_table(cli, tmp_path):
    fasta = tmp_path / "pool.fa"
    pool = load_pool("rna_demo", "rna", limit=40)
    fasta.write_text("".join(f">{i}\n{q}\n" for i, q in zip(pool["id"], pool["seq"])))
    preset = get_preset("smoke", {"scoring.subset_size": 16, "data.max_tokens": 66, "data.pool_limit": None,
                                  "scoring.mask_draws": 2})
    run_scoring(fasta, "rna", tmp_path / "s", preset, progress=False)
    status, out, err = cli("diagnose", "--scores", tmp_path / "s", "--sample", 20, "--budget", 8)
    assert status == 0, err
    table = pd.read_csv(tmp_path / "s" / "diagnostics.csv").set_index("quantity")["value"]
    assert -1 <= float(table["split-half reliability over mask draws"]) <= 1
    auto = float(table["Spearman(damping 1e-8, auto)"])
    assert -1 <= auto <= 1 and (tmp_path / "s" / "diagnostics.md").exists()
    scores = pd.read_parquet(tmp_path / "s" / "scores.parquet")
    assert float(table["Spearman(score, length)"]) == pytest.approx(
        spearmanr(scores["score"], scores["length"]).statistic)
