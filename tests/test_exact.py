"""corelib.exact: each exact tool against an independent computation, and the notebook-01 checks fail
when an approximation is implemented wrong (a transposed gradient)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from corelib.data import load_pool
from corelib.influence import exact

LAM = 0.01


@pytest.fixture(scope="module")
def task():
    rfam = load_pool("rna_demo", "rna").query("source == 'Rfam'").head(400)
    X = exact.kmer_features(rfam["seq"], 2)
    y = (rfam["family"] == "tRNA").to_numpy(float)
    X_tr, X_te = exact.standardize(X[:300], X[300:])
    theta = exact.fit(X_tr, y[:300], LAM)
    return X_tr, y[:300], X_te, y[300:], theta


def _transposed(theta, X, y):
    """A wrong gradient: the right numbers in the wrong coordinates (as a transposed weight gradient)."""
    return exact.per_example_grads(theta, X, y)[:, ::-1]


def test_fit_is_a_stationary_point(task):
    X, y, _, _, theta = task
    assert np.linalg.norm(exact.per_example_grads(theta, X, y).mean(0) + LAM * theta) < 1e-7


def test_hessian_is_the_jacobian_of_the_gradient(task):
    X, y, _, _, theta = task

    def grad(t):
        return exact.per_example_grads(t, X, y).mean(0) + LAM * t

    h = 1e-6
    fd = np.stack([(grad(theta + h * e) - grad(theta - h * e)) / (2 * h) for e in np.eye(len(theta))], axis=1)
    np.testing.assert_allclose(exact.hessian(theta, X, y, LAM), fd, atol=1e-6)


def test_fisher_and_self_influence_match_their_definitions(task):
    X, y, _, _, theta = task
    G = exact.per_example_grads(theta, X, y)
    F = sum(np.outer(g, g) for g in G) / len(G)
    np.testing.assert_allclose(exact.empirical_fisher(theta, X, y), F, atol=1e-12)
    C = F + np.eye(len(F))
    np.testing.assert_allclose(exact.self_influence(G[:5], C), [g @ np.linalg.inv(C) @ g for g in G[:5]], rtol=1e-8)
    np.testing.assert_allclose(exact.self_influence(G[:5], np.diag(C)), [(g * g / np.diag(C)).sum() for g in G[:5]])


def test_upweighted_fit_solves_the_perturbed_objective(task):
    X, y, _, _, theta = task
    eps = 0.01
    t = exact.upweighted_fit(theta, X, y, LAM, 3, eps)
    g = exact.per_example_grads(t, X, y)
    assert np.linalg.norm(g.mean(0) + eps * g[3] + LAM * t) < 1e-7


def test_newton_error_shrinks_linearly_and_a_transposed_gradient_breaks_it(task):
    X, y, _, _, theta = task
    good = exact.newton_check(theta, X, y, LAM, range(3), [1e-2, 1e-3, 1e-4])["relative_error"].to_numpy()
    ratios = good[:-1] / good[1:]
    assert np.all((ratios > 5) & (ratios < 20)) and good[-1] < 1e-2           # notebook 01's assertion
    bad = exact.newton_check(theta, X, y, LAM, range(3), [1e-2, 1e-3, 1e-4], grad_fn=_transposed)
    assert bad["relative_error"].iloc[-1] > 0.5                                # the same assertion fails


def test_leave_one_out_agrees_and_a_transposed_gradient_breaks_it(task):
    X, y, X_te, y_te, theta = task
    idx = np.arange(40)
    actual = exact.leave_one_out(theta, X, y, LAM, X_te, y_te, idx)
    assert pearsonr(exact.influence_on_loss(theta, X, y, LAM, X_te, y_te, idx), actual).statistic >= 0.95
    broken = exact.influence_on_loss(theta, X, y, LAM, X_te, y_te, idx, grad_fn=_transposed)
    assert pearsonr(broken, actual).statistic < 0.95


def test_subset_curvature_with_the_whole_set_is_exact(task):
    X, y, _, _, theta = task
    out = exact.subset_curvature_check(theta, X, y, LAM, sizes=[len(y)], seeds=[0])
    assert out["spearman_no_refit"].iloc[0] == pytest.approx(1.0)
    assert out["spearman_refit"].iloc[0] == pytest.approx(1.0, abs=1e-6)


def test_first_order_term_of_eq6_vanishes_at_the_subset_optimum(task):
    X, y, _, _, theta = task
    s = np.arange(60)
    fitted = exact.fit(X[s], y[s], LAM, theta0=theta)
    first, second = exact.second_order_terms(fitted, X[s], y[s], LAM, exact.per_example_grads(fitted, X, y), 1 / 300)
    assert np.abs(first).max() < 1e-6 < np.abs(second).max()


def test_per_sample_gradient_matrix_matches_autograd():
    from corelib.data import mlm_batches, tokenize
    from corelib.influence import per_sample_gradient_matrix
    from corelib.models import build_model, per_sequence_loss

    model = build_model("rna", "tiny", seed=9)
    tokens = tokenize(load_pool("rna_demo", "rna", limit=6)["seq"], "rna", 40)
    names = ["net.lm_head.layer_norm.weight", "net.lm_head.bias"]
    G, idx = per_sample_gradient_matrix(model, mlm_batches(tokens, np.arange(6), 4, model.vocab, mask_seed=0),
                                        names=names)
    params = dict(model.named_parameters())
    for x, lab, i in mlm_batches(tokens, np.arange(6), 1, model.vocab, mask_seed=0):
        g = torch.autograd.grad(per_sequence_loss(model(x), lab).sum(), [params[n] for n in names])
        expected = torch.cat([t.flatten() for t in g]).double().numpy()
        np.testing.assert_allclose(G[np.flatnonzero(idx == i[0])[0]], expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("scope", ["all", "linear"])
def test_per_sample_gradient_matrix_gives_unused_parameters_zero_columns(scope):
    """fair-esm's contact head gets no gradient from the MLM loss: its columns are zeros (as its diag F is,
    Eq. 9), and every other column equals autograd's per-sequence gradient."""
    from corelib.data import mlm_batches, tokenize
    from corelib.influence import diagonal_fisher, per_sample_gradient_matrix
    from corelib.influence.hooks import scope_params
    from corelib.models import build_model, per_sequence_loss

    model = build_model("protein", "tiny", seed=9)
    tokens = tokenize(load_pool("protein_demo", "protein", limit=4)["seq"], "protein", 30)
    params = scope_params(model, scope)
    assert "net.contact_head.regression.weight" in params
    G, idx = per_sample_gradient_matrix(model, mlm_batches(tokens, np.arange(4), 3, model.vocab, mask_seed=0), scope)
    assert G.shape == (4, sum(p.numel() for p in params.values()))
    fisher, _ = diagonal_fisher(model, mlm_batches(tokens, np.arange(4), 3, model.vocab, mask_seed=0), scope)
    for x, lab, i in mlm_batches(tokens, np.arange(4), 1, model.vocab, mask_seed=0):
        g = torch.autograd.grad(per_sequence_loss(model(x), lab).sum(), list(params.values()), allow_unused=True)
        expected = torch.cat([(t if t is not None else torch.zeros_like(p)).flatten()
                              for t, p in zip(g, params.values())]).double().numpy()
        np.testing.assert_allclose(G[np.flatnonzero(idx == i[0])[0]], expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.square(G).mean(0), torch.cat([f.flatten() for f in fisher.values()]).numpy(),
                               rtol=1e-4, atol=1e-12)
