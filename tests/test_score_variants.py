"""Score variants (score-robustness issue): K mask draws (K = 1 is the paper's single mask), draws keyed by
seed, pool index and draw (so independent of batch composition), the per-token score m x I, and a summed loss;
plus bf16 forward passes that still reduce the Fisher and per-sample products in fp32."""
from __future__ import annotations

import json

import numpy as np
import pytest

from corelib.config import get_preset
from corelib.data import get_vocab, load_pool, mlm_mask, tokenize
from corelib.influence import run_scoring
from corelib.selection import read_scores

BASE = get_preset("smoke", {"scoring.subset_size": 16, "data.max_tokens": 66, "data.pool_limit": None})


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("variants")
    table = load_pool("rna_demo", "rna", limit=30)
    path = tmp / "pool.fa"
    path.write_text("".join(f">{i}\n{q}\n" for i, q in zip(table["id"], table["seq"])))
    return tmp, path, table


def _scores(pool, name, preset, **kw):
    tmp, fasta, _ = pool
    return read_scores(run_scoring(fasta, "rna", tmp / name, preset, checkpoint=None, finetune=False,
                                   progress=False, **kw))


@pytest.mark.slow
def test_mask_draws_mean_draw_zero_is_the_single_mask_and_batching_does_not_matter(pool):
    one, _ = _scores(pool, "k1", BASE)
    three, meta = _scores(pool, "k3", BASE.override({"scoring.mask_draws": 3}))
    rebatched, _ = _scores(pool, "k3b", BASE.override({"scoring.mask_draws": 3, "scoring.batch_size": 5}),
                           shard_size=7)
    np.testing.assert_array_equal(three["draw0"], one["score"])        # K = 1 is draw 0, exactly
    np.testing.assert_allclose(three[["draw0", "draw1", "draw2"]].mean(axis=1), three["score"], rtol=1e-12)
    assert not np.allclose(three["draw1"], three["draw0"])                 # other masks, other scores
    for col in ("draw0", "draw1", "draw2"):                               # keyed by (seed, index, draw) only
        np.testing.assert_allclose(rebatched[col], three[col], rtol=1e-5)
    assert json.loads((pool[0] / "k3" / "run.json").read_text())["mask_draws"] == 3
    assert "mask_draws" not in json.loads((pool[0] / "k1" / "run.json").read_text())   # default: as before


def test_per_token_score_is_m_times_the_score(pool):
    scores, _ = _scores(pool, "pt", BASE)
    _, _, table = pool
    vocab = get_vocab("rna")
    toks = tokenize(table["seq"], "rna", BASE.data.max_tokens)
    # m counted from the masks themselves: the positions with a label
    m = np.array([(mlm_mask(t.astype(np.int64), i, BASE.seed, vocab)[1] != -100).sum() for i, t in enumerate(toks)])
    np.testing.assert_array_equal(scores["masked"], m)
    np.testing.assert_allclose(scores["token_score"], m * scores["score"], rtol=1e-12)


def test_summed_loss_is_m_times_the_mean_loss(pool):
    mean, _ = _scores(pool, "mean", BASE)
    summed, meta = _scores(pool, "sum", BASE.override({"scoring.reduction": "sum"}))
    m = mean["masked"].to_numpy()
    np.testing.assert_allclose(summed["loss"], m * mean["loss"], rtol=1e-5)   # same masks, summed over m
    np.testing.assert_allclose(summed["token_score"], summed["score"] / m, rtol=1e-12)
    assert meta["reduction"] == "sum"


def test_bf16_scores_track_fp32(pool):
    fp32, _ = _scores(pool, "fp32", BASE)
    bf16, meta = _scores(pool, "bf16", BASE.override(precision="bf16"))
    assert meta["precision"] == "bf16"
    from scipy.stats import spearmanr

    assert spearmanr(fp32["score"], bf16["score"]).statistic > 0.9
    assert np.isfinite(bf16["score"]).all()


def test_d_sub_never_draws_an_excluded_sequence(pool, tmp_path):
    from corelib.influence.scoring import ScoringArguments, prepare_run

    _, fasta, _ = pool
    excluded = np.arange(0, 30, 2)
    run = prepare_run(fasta, "rna", tmp_path / "x", BASE.override({"scoring.subset_size": 10}),
                      ScoringArguments(exclude=excluded), progress=False)
    assert len(run.sub_idx) == 10 and not set(run.sub_idx) & set(excluded)
    assert run.settings["excluded"] == 15
