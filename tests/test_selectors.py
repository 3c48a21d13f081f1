"""Selectors beyond the paper (score-robustness issue): per-token Top I, loss top/bottom-k, length-matched
random, token budgets, and the sign of a score file read from scores.json; each checked by hand."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from corelib.errors import InputError
from corelib.selection import select_coreset, select_indices
from corelib.selection.methods import length_matched, within_tokens

RNG = np.random.default_rng(7)
N = 300
TABLE = pd.DataFrame({"id": [f"s{i}" for i in range(N)], "index": np.arange(N),
                      "length": RNG.integers(20, 400, N), "score": RNG.gamma(2.0, 1.0, N),
                      "loss": RNG.normal(2.0, 0.3, N), "token_score": RNG.gamma(2.0, 50.0, N)})


def test_loss_selectors_take_the_extremes_of_the_loss_column():
    by_loss = np.argsort(-TABLE["loss"].to_numpy(), kind="stable")
    assert set(select_indices("loss-topk", TABLE, 25)) == set(by_loss[:25])
    assert set(select_indices("loss-bottomk", TABLE, 25)) == set(by_loss[-25:])


def test_per_token_top_i_ranks_the_per_token_column():
    order = np.argsort(-TABLE["token_score"].to_numpy(), kind="stable")
    assert set(select_indices("topk-per-token", TABLE, 40)) == set(order[:40])
    with pytest.raises(InputError, match="needs a 'token_score' column"):
        select_indices("topk-per-token", TABLE.drop(columns="token_score"), 40)


def test_length_matched_random_has_the_reference_histogram():
    lengths = TABLE["length"].to_numpy()
    reference = np.sort(np.argsort(lengths)[:50])             # a short-biased coreset
    edges = np.array([0, 50, 100, 150, 200, 300, 400])
    picked = length_matched(lengths, reference, bins=edges, seed=3)
    want, _ = np.histogram(lengths[reference], bins=edges)
    got, _ = np.histogram(lengths[picked], bins=edges)
    assert (got == want).all() and picked.size == reference.size == np.unique(picked).size
    # default bins through the registry: same size, other sequences (a random draw, not the reference)
    rows = select_indices("length-matched", TABLE, None, seed=1, reference=reference)
    assert rows.size == 50 and set(rows) != set(reference)


@pytest.mark.parametrize("method", ["random", "topk", "bottomk", "cci", "loss-topk", "topk-per-token", "length"])
def test_token_budgets_are_met_within_one_sequence(method):
    lengths = TABLE["length"].to_numpy()
    for budget in (1_000, 7_777, 20_000):
        rows = select_indices(method, TABLE, budget_tokens=budget, seed=2)
        used = lengths[rows].sum()
        assert used <= budget and budget - used < lengths.max(), (method, budget, used)
        assert np.unique(rows).size == rows.size


def test_token_budget_of_top_i_is_the_prefix_that_fits():
    lengths, order = TABLE["length"].to_numpy(), np.argsort(-TABLE["score"].to_numpy(), kind="stable")
    budget, total, expected = 5_000, 0, []
    for i in order:                          # by hand: take in score order until the next does not fit
        if total + lengths[i] > budget:
            break
        expected.append(i)
        total += lengths[i]
    assert set(select_indices("topk", TABLE, budget_tokens=budget)) == set(expected)


def test_within_tokens_edge_cases():
    lengths = np.array([5, 10, 20])
    assert within_tokens(lambda m: np.arange(m), lengths, 100, 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="holds no sequence"):
        within_tokens(lambda m: np.arange(m), lengths, 4, 3)


def _score_dir(tmp_path, sign):
    tmp_path.mkdir(parents=True, exist_ok=True)
    fasta = tmp_path / "pool.fa"
    fasta.write_text("".join(f">s{i}\n{'ACGU' * (1 + i % 5)}\n" for i in range(N)))
    stored = TABLE[["id", "index", "length", "score", "loss"]].assign(score=sign * TABLE["score"])
    out = tmp_path / "scores"
    out.mkdir()
    stored.to_parquet(out / "scores.parquet", index=False)
    meta = {"fasta": str(fasta), "modality": "rna"}
    if sign < 0:   # what `score --compat bio-coreset` records
        meta.update({"score_sign": -1, "sign": "negated (official bio-coreset): lower = more influential"})
    (out / "scores.json").write_text(json.dumps(meta))
    return out


@pytest.mark.parametrize("method", ["topk", "cci", "cci-official"])
def test_select_reads_the_sign_so_every_method_sees_higher_is_more_influential(tmp_path, method):
    plain = select_coreset(_score_dir(tmp_path / "p", 1), method, tmp_path / "a", budget=30)[0]
    negated = select_coreset(_score_dir(tmp_path / "n", -1), method, tmp_path / "b", budget=30)[0]
    a, b = (np.load(d / "indices.npy") for d in (plain, negated))
    assert (a == b).all()
    if method == "topk":
        assert set(a) == set(np.argsort(-TABLE["score"].to_numpy(), kind="stable")[:30])
    assert json.loads((negated / "manifest.json").read_text())["score_sign"] == -1


def test_select_cli_with_a_token_budget_and_a_length_match(cli, tmp_path):
    scores = _score_dir(tmp_path, 1)
    status, out, err = cli("select", "--scores", scores, "--method", "topk", "--budget-tokens", 3000,
                           "--out", tmp_path / "t")
    assert status == 0, err
    man = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert man["tokens"] <= 3000 and 3000 - man["tokens"] < TABLE["length"].max()
    status, out, err = cli("select", "--scores", scores, "--method", "length-matched", "--like", tmp_path / "t",
                           "--out", tmp_path / "l")
    assert status == 0, err
    assert json.loads((tmp_path / "l" / "manifest.json").read_text())["budget"] == man["budget"]


def test_selector_profile_by_hand():
    from corelib.selection import selector_profile

    pool = pd.DataFrame({"score": np.arange(20, dtype=float), "length": np.arange(20) + 1,
                         "source": ["a"] * 10 + ["b"] * 10})
    prof = selector_profile(pool, {"top": np.arange(18, 20)}).set_index("selector")
    assert prof.loc["top", "size"] == 2 and prof.loc["top", "residues"] == 19 + 20
    assert prof.loc["top", "mean_score_decile"] == 10 and prof.loc["top", "share b"] == 1.0
    assert prof.loc["pool", "mean_score_decile"] == 5.5 and prof.loc["pool", "share a"] == 0.5
