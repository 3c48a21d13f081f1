"""Exact influence tools for small models (Section 3.1-3.2, Appendix C), used by notebook 01 to check
each approximation behind Eq. 11 against the quantity it approximates.

The model is L2-regularised logistic regression, R(theta) = (1/N) sum_n w_n l(z_n, theta) + lam/2 |theta|^2
with l the negative log-likelihood; features are k-mer frequencies of real RNA sequences. Everything is
float64 and exact: the Hessian, the empirical Fisher, their inverses, and retraining with a point upweighted
or left out (scipy L-BFGS, then Newton steps with the exact Hessian until the gradient stops shrinking, at
the float64 floor of about 1e-16: the minimiser, not an L-BFGS stopping point, so BLAS kernels and thread
counts change only digits far below those printed; `solve_error` bounds what is left).

"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from scipy.stats import spearmanr

NEWTON_STEPS = 20   # at most this many Newton steps after L-BFGS (quadratic convergence needs a handful)

SOLVE_TOL = 1e-14   # gradient norm a retraining is held to (`fit` reaches ~1e-16): what `newton_check` bounds with


def kmer_features(seqs, k: int = 3) -> np.ndarray:
    """k-mer frequency vectors over ACGU (other letters skipped), plus a constant 1 for the bias."""
    kmers = {"".join(p): i for i, p in enumerate(itertools.product("ACGU", repeat=k))}
    X = np.zeros((len(seqs), len(kmers) + 1))
    for r, s in enumerate(seqs):
        for j in range(len(s) - k + 1):
            col = kmers.get(s[j : j + k])
            if col is not None:
                X[r, col] += 1
        X[r, :-1] /= max(X[r, :-1].sum(), 1)
    X[:, -1] = 1.0
    return X


def standardize(X_train, *others):
    """Z-score the k-mer columns with the training statistics (the bias column is kept at 1), so that
    the data term, not the L2 term, shapes the Hessian."""
    mu, sd = X_train[:, :-1].mean(0), X_train[:, :-1].std(0) + 1e-12
    out = []
    for X in (X_train, *others):
        Z = X.copy()
        Z[:, :-1] = (X[:, :-1] - mu) / sd
        out.append(Z)
    return out


def losses(theta, X, y) -> np.ndarray:
    """Per-example negative log-likelihood l(z_n, theta) of logistic regression, y in {0, 1}."""
    z = X @ theta
    return -(y * log_expit(z) + (1 - y) * log_expit(-z))


def per_example_grads(theta, X, y) -> np.ndarray:
    """g_n = grad_theta l(z_n, theta) = (sigmoid(x_n . theta) - y_n) x_n, shape (N, d)."""
    return (expit(X @ theta) - y)[:, None] * X


def risk(theta, X, y, lam: float, w=None) -> float:
    """(1/N) sum_n w_n l_n + lam/2 |theta|^2 (ERM objective of Section 3.1 with L2)."""
    w = np.ones(len(y)) if w is None else w
    return float(w @ losses(theta, X, y)) / len(y) + 0.5 * lam * float(theta @ theta)


def fit(X, y, lam: float, w=None, theta0=None) -> np.ndarray:
    """argmin of `risk`: theta* of Section 3.1, or theta~ of Assumption 1 when (X, y) is the subset D_sub.
    L-BFGS from `theta0`, then Newton steps with the exact Hessian (`hessian`) while the gradient norm shrinks:
    L-BFGS alone stops where its tolerances say (a gradient norm near 1e-8 here), a point that moves with the
    BLAS kernel and so with the machine; the Newton steps end at the minimiser to float64 rounding."""
    w = np.ones(len(y)) if w is None else w
    n = len(y)

    def grad(t):
        return (w @ per_example_grads(t, X, y)) / n + lam * t

    def fun(t):
        return risk(t, X, y, lam, w), grad(t)

    theta0 = np.zeros(X.shape[1]) if theta0 is None else theta0
    t = minimize(fun, theta0, jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10000}).x
    g = grad(t)
    for _ in range(NEWTON_STEPS):
        step = t - np.linalg.solve(hessian(t, X, y, lam, w), g)
        g_step = grad(step)
        if not np.linalg.norm(g_step) < np.linalg.norm(g):
            break
        t, g = step, g_step
    return t


def solve_error(theta, X, y, lam: float, w=None) -> float:
    """Bound on |theta - argmin risk| from the gradient left at `theta`: risk is lam-strongly convex (the
    logistic loss is convex, the L2 term adds lam I), so |theta - theta*| <= |grad risk(theta)| / lam."""
    w = np.ones(len(y)) if w is None else w
    return float(np.linalg.norm((w @ per_example_grads(theta, X, y)) / len(y) + lam * theta) / lam)


def hessian(theta, X, y, lam: float, w=None) -> np.ndarray:
    """H = (1/N) sum_n w_n sigma_n (1 - sigma_n) x_n x_n^T + lam I (the curvature of Eq. 1 / Eq. 4; w_n = 1
    unless weights are given)."""
    p = expit(X @ theta)
    c = p * (1 - p) if w is None else w * p * (1 - p)
    return (X * c[:, None]).T @ X / len(y) + lam * np.eye(X.shape[1])


def empirical_fisher(theta, X, y, lam: float = 0.0) -> np.ndarray:
    """F = (1/N) sum_n g_n g_n^T (+ lam I) (Eq. 8)."""
    G = per_example_grads(theta, X, y)
    return G.T @ G / len(y) + lam * np.eye(X.shape[1])


def newton_step(theta, X, y, lam: float, index: int, eps: float, curvature=None, grad_fn=None) -> np.ndarray:
    """Eq. 4: theta_eps - theta ~ -eps H^-1 g_z for z = (X[index], y[index]) upweighted by eps."""
    H = hessian(theta, X, y, lam) if curvature is None else curvature
    g = (grad_fn or per_example_grads)(theta, X[index : index + 1], y[index : index + 1])[0]
    return -eps * np.linalg.solve(H, g)


def upweighted_fit(theta, X, y, lam: float, index: int, eps: float) -> np.ndarray:
    """Actual retraining with z = (X[index], y[index]) upweighted by eps (the perturbed ERM of 3.1)."""
    w = np.ones(len(y))
    w[index] += eps * len(y)  # (1/N) sum w_n l_n gains eps * l(z)
    return fit(X, y, lam, w, theta0=theta)


def influence_on_loss(theta, X, y, lam: float, X_test, y_test, indices, grad_fn=None) -> np.ndarray:
    """Eqs. 1-3 for removal (eps = -1/N): predicted change of the test loss when each training point in
    `indices` is left out, (1/N) g_test^T H^-1 g_z (Koh & Liang 2017)."""
    grad_fn = grad_fn or per_example_grads
    H_inv_g = np.linalg.solve(hessian(theta, X, y, lam), grad_fn(theta, X[indices], y[indices]).T)
    g_test = grad_fn(theta, X_test, y_test).mean(0)
    return g_test @ H_inv_g / len(y)


def leave_one_out(theta, X, y, lam: float, X_test, y_test, indices) -> np.ndarray:
    """Actual change of the mean test loss after retraining without each training point in `indices`."""
    base = losses(theta, X_test, y_test).mean()
    out = []
    for i in indices:
        keep = np.ones(len(y), dtype=bool)
        keep[i] = False
        # the objective keeps 1/N weights (eps = -1/N removes the point from the same sum)
        w = keep.astype(float)
        t = fit(X, y, lam, w, theta0=theta)
        out.append(losses(t, X_test, y_test).mean() - base)
    return np.array(out)


def self_influence(G: np.ndarray, curvature: np.ndarray) -> np.ndarray:
    """g_z^T C^-1 g_z for each row g_z of G (Eq. 7 with C = H_sub, or Eq. 11 with C = diag F)."""
    if curvature.ndim == 1:
        return (G**2 / curvature).sum(1)
    return np.einsum("nd,nd->n", G, np.linalg.solve(curvature, G.T).T)


def second_order_terms(theta, X_sub, y_sub, lam: float, g_tr: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 6 for each training gradient in g_tr (rows), on the mean over D_sub: the first-order term
    g_sub^T H^-1 g_tr (dropped under Assumption 1) and the second-order term
    1/2 eps g_tr^T H^-1 H_sub H^-1 g_tr, with H = H_sub the subset Hessian."""
    H = hessian(theta, X_sub, y_sub, lam)
    g_sub = per_example_grads(theta, X_sub, y_sub).mean(0) + lam * theta
    Hinv_gtr = np.linalg.solve(H, g_tr.T).T
    first = Hinv_gtr @ g_sub
    second = 0.5 * eps * np.einsum("nd,de,ne->n", Hinv_gtr, H, Hinv_gtr)
    return first, second


# ----------------------------------------------------------------------------- the checks of notebook 01
def newton_check(theta, X, y, lam: float, indices, eps_values, grad_fn=None) -> pd.DataFrame:
    """Eq. 4 against retraining: mean relative error |predicted - actual| / |actual| of the parameter
    change, per eps (it should shrink linearly with eps). Retraining is an iterative solve, held to a gradient
    norm of SOLVE_TOL, so each retrained theta (and the given one) is within delta = SOLVE_TOL / lam of its
    minimiser (`solve_error`) and r within delta (1 + r) / (|actual| - delta) of its exact value: that is
    `error_bound` (a larger gradient left by a solve widens it), and `relative_error` keeps the digits it supports."""
    def delta(t, w=None):
        return max(SOLVE_TOL / lam, solve_error(t, X, y, lam, w))

    base = delta(theta)
    rows = []
    for eps in eps_values:
        errs, bounds = [], []
        for i in indices:
            refit = upweighted_fit(theta, X, y, lam, i, eps)
            actual = refit - theta
            pred = newton_step(theta, X, y, lam, i, eps, grad_fn=grad_fn)
            w = np.ones(len(y))
            w[i] += eps * len(y)
            d, size = base + delta(refit, w), np.linalg.norm(actual)
            errs.append(np.linalg.norm(pred - actual) / size)
            bounds.append(d * (1 + errs[-1]) / (size - d) if size > d else np.inf)
        error, bound = float(np.mean(errs)), float(np.mean(bounds))
        rows.append({"eps": eps, "relative_error": supported_digits(error, bound), "error_bound": bound})
    return pd.DataFrame(rows)


def supported_digits(value: float, bound: float) -> float:
    """`value` rounded to its last decimal place that `bound` (an absolute error bound) leaves certain: the place
    10^p with 10^p > bound; NaN when the bound leaves no digit."""
    if not np.isfinite(bound) or bound >= abs(value):
        return float("nan")
    if bound == 0:
        return float(value)
    return float(round(value, -int(np.floor(np.log10(bound))) - 1))


def fisher_hessian_gap(theta, X, y, lam: float, distances, seed: int = 0) -> pd.DataFrame:
    """|F - H|_F / |H|_F at theta* + t u along a random unit direction u, with the norm of the mean
    gradient there: the empirical Fisher stands in for the Hessian only near the optimum."""
    u = np.random.default_rng(seed).normal(size=theta.shape)
    u /= np.linalg.norm(u)
    rows = []
    for t in distances:
        th = theta + t * u
        H = hessian(th, X, y, lam)
        rows.append({"distance": t, "relative_gap": float(np.linalg.norm(empirical_fisher(th, X, y, lam) - H) / np.linalg.norm(H)),
                     "mean_gradient_norm": float(np.linalg.norm(per_example_grads(th, X, y).mean(0) + lam * th))})
    return pd.DataFrame(rows)


def subset_curvature_check(theta, X, y, lam: float, sizes, seeds=range(5)) -> pd.DataFrame:
    """Proposition 1: Spearman between self-influence with H_sub (random subsets of size M) and with the
    full H, with H_sub taken at theta* ('no refit') or after fitting theta~ to the subset ('refit',
    Assumption 1 / Remark 1); mean over seeds."""
    reference = self_influence(per_example_grads(theta, X, y), hessian(theta, X, y, lam))
    rows = []
    for m in sizes:
        plain, refit = [], []
        for seed in seeds:
            s = np.random.default_rng(seed).choice(len(y), m, replace=False)
            plain.append(spearmanr(self_influence(per_example_grads(theta, X, y), hessian(theta, X[s], y[s], lam)),
                                   reference).statistic)
            ts = fit(X[s], y[s], lam, theta0=theta)
            refit.append(spearmanr(self_influence(per_example_grads(ts, X, y), hessian(ts, X[s], y[s], lam)),
                                   reference).statistic)
        rows.append({"M": m, "spearman_no_refit": float(np.mean(plain)), "spearman_refit": float(np.mean(refit))})
    return pd.DataFrame(rows)
