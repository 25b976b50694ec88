"""Gaussian and DiagGaussian against SciPy, the ridge, and the moments of their samples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import densbench as db
from densbench.estimators.gaussian import gaussian_logpdf

TOL = 1e-8


def assert_moments(samples: np.ndarray, mean: np.ndarray, cov: np.ndarray,
                   n_se: float = 5.0) -> None:
    """Sample mean and covariance within ``n_se`` standard errors of ``mean`` and ``cov``
    (the SEs estimated from the samples, so this holds for non-Gaussian models too)."""
    n = samples.shape[0]
    c = samples - samples.mean(axis=0)
    se_mean = samples.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(samples.mean(axis=0) - mean) <= n_se * se_mean)
    prods = c[:, :, None] * c[:, None, :]
    se_cov = prods.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(prods.mean(axis=0) - cov) <= n_se * se_cov)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    X = rng.normal(size=(500, 4)) @ A + [1.0, -2.0, 0.5, 3.0]
    Z = rng.normal(size=(200, 4)) @ A * 1.5
    return X, Z


def test_gaussian_matches_scipy(data):
    X, Z = data
    est = db.estimators.make("gaussian").fit(X)
    ref = stats.multivariate_normal(est.mean_, est.covariance_).logpdf(Z)
    assert np.max(np.abs(est.score_samples(Z) - ref)) <= TOL


def test_gaussian_covariance_is_ml_plus_relative_ridge(data):
    X, _ = data
    S = np.cov(X.T, bias=True)
    plain = db.estimators.make("gaussian", ridge=0.0).fit(X)
    np.testing.assert_allclose(plain.covariance_, S, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(plain.mean_, X.mean(axis=0), rtol=0, atol=1e-12)
    ridged = db.estimators.make("gaussian", ridge=0.1).fit(X)
    expected = S + 0.1 * np.trace(S) / 4 * np.eye(4)
    np.testing.assert_allclose(ridged.covariance_, expected, rtol=1e-12, atol=1e-12)


def test_gaussian_survives_degenerate_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 1))
    X = np.hstack([x, 2 * x, np.ones((100, 1))])         # rank 1, one constant column
    s = db.estimators.make("gaussian").fit(X).score_samples(X)
    assert np.isfinite(s).all()


def test_diag_gaussian_matches_scipy(data):
    X, Z = data
    est = db.estimators.make("diag_gaussian").fit(X)
    ref = stats.norm.logpdf(Z, loc=est.mean_, scale=np.sqrt(est.var_)).sum(axis=1)
    assert np.max(np.abs(est.score_samples(Z) - ref)) <= TOL
    var = X.var(axis=0)
    np.testing.assert_allclose(est.var_, var + 1e-6 * var.mean(), rtol=1e-12)


def test_gaussian_logpdf_helper_matches_scipy(data):
    X, Z = data
    mean, cov = X.mean(axis=0), np.cov(X.T)
    got = gaussian_logpdf(Z, mean, np.linalg.cholesky(cov))
    assert got.dtype == np.float64
    assert np.max(np.abs(got - stats.multivariate_normal(mean, cov).logpdf(Z))) <= TOL


@pytest.mark.parametrize("name", ["gaussian", "diag_gaussian"])
def test_sample_moments(name, data):
    X, _ = data
    est = db.estimators.make(name).fit(X)
    cov = est.covariance_ if name == "gaussian" else np.diag(est.var_)
    assert_moments(est.sample(20_000, random_state=0), est.mean_, cov)


@pytest.mark.parametrize("name", ["gaussian", "diag_gaussian"])
@pytest.mark.parametrize("ridge", [-1.0, float("nan"), "big", True])
def test_bad_ridge_is_named(name, ridge, data):
    with pytest.raises(ValueError, match=f"^{name}: ridge must be a finite float >= 0; got"):
        db.estimators.make(name, ridge=ridge).fit(data[0])
