"""made and rnn_ar: exact normalization over all discrete vectors, the autoregressive
property, and known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

import densbench as db

NAMES = ["made", "rnn_ar"]
FAST = {"hidden": 32, "max_epochs": 15, "batch_size": 128}


def _all_vectors(d, levels):
    return np.array(list(itertools.product(range(levels), repeat=d)), dtype=np.float64)


def _correlated_levels(n, d, levels, seed=0):
    """Integer data whose dimensions are correlated (a noisy copy of a latent level)."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, levels, size=(n, 1))
    noise = rng.integers(-1, 2, size=(n, d)) * (rng.random((n, d)) < 0.3)
    return np.clip(z + noise, 0, levels - 1).astype(np.float64)


@pytest.mark.parametrize("name", NAMES)
def test_bernoulli_probabilities_over_all_256_vectors_sum_to_one(name):
    X = _correlated_levels(500, 8, 2)
    est = db.estimators.make(name, levels=2, **FAST).fit(X)
    assert est.head_.kind == "bernoulli"
    total = np.exp(est.score_samples(_all_vectors(8, 2))).sum()
    assert total == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_categorical_probabilities_over_all_64_vectors_sum_to_one(name):
    X = _correlated_levels(500, 3, 4)
    est = db.estimators.make(name, levels=4, **FAST).fit(X)
    assert est.head_.kind == "categorical"
    total = np.exp(est.score_samples(_all_vectors(3, 4))).sum()
    assert total == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_conditional_i_depends_only_on_earlier_dimensions(name):
    est = db.estimators.make(name, hidden=16, max_epochs=1).fit(
        np.random.default_rng(0).normal(size=(100, 5)))
    x = torch.randn(1, 5, requires_grad=True)
    params = est.module_(x)[0]                      # (d, size)
    for i in range(5):
        (grad,) = torch.autograd.grad(params[i].sum(), x, retain_graph=True)
        assert torch.all(grad[0, i:] == 0), f"output {i} depends on x_{i}.."
        if i > 0:
            assert torch.any(grad[0, :i] != 0)


@pytest.mark.parametrize("name", NAMES)
def test_continuous_model_reaches_a_correlated_gaussian(name):
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    rng = np.random.default_rng(1)
    X, V, T = (rng.multivariate_normal([0, 0], cov, size=n) for n in (3000, 500, 3000))
    est = db.estimators.make(name, hidden=32, max_epochs=60, patience=10, lr=3e-3).fit(X, V)
    truth = stats.multivariate_normal([0, 0], cov).logpdf(T)
    gap = truth.mean() - est.score(T)
    # a 5-component mixture per conditional can represent this density; 0.05 nats leaves
    # room for the finite training set and the early stop
    assert -0.05 < gap < 0.05


@pytest.mark.parametrize("name", NAMES)
def test_discrete_model_beats_independent_frequencies(name):
    X, T = _correlated_levels(2000, 6, 5, seed=2), _correlated_levels(1000, 6, 5, seed=3)
    est = db.estimators.make(name, levels=5, hidden=64, max_epochs=40, lr=3e-3).fit(X)
    freq = np.stack([np.bincount(X[:, j].astype(int), minlength=5) + 1.0
                     for j in range(6)]) / (len(X) + 5)
    independent = np.log(freq[np.arange(6), T.astype(int)]).sum(1).mean()
    assert est.score(T) > independent + 0.5


@pytest.mark.parametrize("name", NAMES)
def test_samples_reproduce_the_marginals(name):
    X = _correlated_levels(2000, 4, 5, seed=4)
    est = db.estimators.make(name, levels=5, hidden=64, max_epochs=30, lr=3e-3).fit(X)
    S = est.sample(4000, random_state=0)
    assert set(np.unique(S)) <= set(range(5))
    for j in range(4):
        p = np.bincount(X[:, j].astype(int), minlength=5) / len(X)
        q = np.bincount(S[:, j].astype(int), minlength=5) / len(S)
        assert np.abs(p - q).max() < 0.05


@pytest.mark.parametrize("name", NAMES)
def test_bad_levels_are_named(name):
    est = db.estimators.make(name, levels=3, max_epochs=1)
    with pytest.raises(ValueError, match=f"^{name}: X must hold integer levels 0..2"):
        est.fit(np.array([[0.0, 1.5], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=f"^{name}: X must hold integer levels"):
        est.fit(np.array([[0.0, 3.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=f"^{name}: conditional must be"):
        db.estimators.make(name, conditional="poisson").fit(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=f"^{name}: levels must be 2 for bernoulli"):
        db.estimators.make(name, conditional="bernoulli", levels=3).fit(np.zeros((4, 2)))
