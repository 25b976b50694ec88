"""PPCA against scikit-learn's PCA (same ML parameters) and its closed form; factor
analysis against scikit-learn's FactorAnalysis scoring; selection and sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.decomposition import FactorAnalysis as SkFactorAnalysis

import densbench as db

from .test_gaussian import assert_moments

TOL = 1e-8
D, Q = 6, 2


def low_rank(n: int, seed: int) -> np.ndarray:
    """Rank-Q signal plus isotropic noise: PPCA's model with q = Q."""
    rng = np.random.default_rng(seed)
    W = np.random.default_rng(99).normal(size=(Q, D)) * 2.0
    return rng.normal(size=(n, Q)) @ W + rng.normal(size=(n, D)) * 0.5 + 1.0


@pytest.fixture(scope="module")
def data():
    return low_rank(400, 0), low_rank(200, 1), low_rank(300, 2)


def test_ppca_matches_sklearn_pca(data):
    X, _, Z = data
    n = len(X)
    est = db.estimators.make("ppca", n_components=Q).fit(X)
    # scikit-learn's PCA divides by n - 1; rescaling the data about its mean by
    # sqrt((n-1)/n) makes its explained variances the ML eigenvalues (divide by n), i.e.
    # the same parameters. Both are evaluated at the same untouched test points.
    mean = X.mean(axis=0)
    pca = PCA(n_components=Q, svd_solver="full").fit(mean + (X - mean) * math.sqrt((n - 1) / n))
    assert pca.noise_variance_ == pytest.approx(est.noise_variance_, rel=1e-10)
    assert np.max(np.abs(est.score_samples(Z) - pca.score_samples(Z))) <= TOL


def test_ppca_is_the_closed_form_maximum(data):
    X, _, _ = data
    est = db.estimators.make("ppca", n_components=Q).fit(X)
    lam = np.sort(np.linalg.eigvalsh(np.cov(X.T, bias=True)))[::-1]
    sigma2 = lam[Q:].mean()
    assert est.noise_variance_ == pytest.approx(sigma2, rel=1e-12)
    # Tipping & Bishop (1999), eq. 4 at the ML solution
    closed = -0.5 * (D * math.log(2 * math.pi) + np.log(lam[:Q]).sum()
                     + (D - Q) * math.log(sigma2) + D)
    assert est.score(X) == pytest.approx(closed, abs=1e-10)
    best = est.score_samples(X).sum()
    rng = np.random.default_rng(3)
    W = est.components_
    for _ in range(5):
        Wp = W + 0.05 * rng.normal(size=W.shape)
        for s2 in (sigma2 * 0.95, sigma2, sigma2 * 1.05):
            cov = Wp.T @ Wp + s2 * np.eye(D)
            assert stats.multivariate_normal(est.mean_, cov).logpdf(X).sum() < best


def test_ppca_auto_selects_on_validation(data):
    X, X_val, _ = data
    est = db.estimators.make("ppca", n_components="auto").fit(X, X_val)
    qs = [q for q, _ in est.selection_]
    assert qs == [1, 2, 4, 5]                       # powers of two below d, and d - 1
    scores = dict(est.selection_)
    assert est.n_components_ == max(scores, key=scores.get) == Q
    fixed = db.estimators.make("ppca", n_components=Q).fit(X)
    assert est.score(X_val) == pytest.approx(fixed.score(X_val), abs=1e-12)
    assert db.estimators.make("ppca").fit(X).n_components_ == math.ceil(D / 4)
    assert db.estimators.make("ppca", n_components=50).fit(X).n_components_ == D - 1


def test_factor_analysis_matches_sklearn(data):
    X, _, Z = data
    est = db.estimators.make("factor_analysis", n_components=Q, random_state=0).fit(X)
    # the same fitted model: densbench's tol is per example, scikit-learn's on the total
    sk = SkFactorAnalysis(n_components=Q, tol=1e-4 * len(X), svd_method="lapack",
                          random_state=0).fit(X)
    np.testing.assert_array_equal(est.components_, sk.components_)
    np.testing.assert_array_equal(est.noise_variance_, sk.noise_variance_)
    assert np.max(np.abs(est.score_samples(Z) - sk.score_samples(Z))) <= TOL
    assert est.converged_


def test_factor_analysis_auto(data):
    X, X_val, _ = data
    est = db.estimators.make("factor_analysis").fit(X, X_val)
    scores = dict(est.selection_)
    assert est.n_components_ == max(scores, key=scores.get)


@pytest.mark.parametrize("name", ["ppca", "factor_analysis"])
def test_sample_moments(name, data):
    est = db.estimators.make(name, n_components=Q).fit(data[0])
    assert_moments(est.sample(20_000, random_state=0), est.mean_, est.covariance_)


@pytest.mark.parametrize("name", ["ppca", "factor_analysis"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "all", True])
def test_bad_n_components_is_named(name, value, data):
    with pytest.raises(ValueError, match=f"^{name}: n_components must be an int >= 1 or 'auto'"):
        db.estimators.make(name, n_components=value).fit(data[0])


def test_bad_factor_analysis_params_are_named(data):
    with pytest.raises(ValueError, match="^factor_analysis: tol must be"):
        db.estimators.make("factor_analysis", tol=0).fit(data[0])
    with pytest.raises(ValueError, match="^factor_analysis: max_iter must be"):
        db.estimators.make("factor_analysis", max_iter=0).fit(data[0])


def test_ppca_needs_two_features():
    with pytest.raises(ValueError, match="^ppca: needs at least 2 features"):
        db.estimators.make("ppca").fit(np.arange(10.0).reshape(-1, 1))
