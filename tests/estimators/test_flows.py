"""MAF, NSF and RealNVP (zuko flows): normalization, known answers, sampling, units.

Every property is one test parametrized over the three flows. References nobody here
wrote: SciPy's multivariate normal, the exact banana density, and the change of
variables (scaling the data by c shifts log-densities by exactly -d log c).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import densbench as db

FLOWS = ["maf", "nsf", "realnvp"]

#: Small, fast settings that still learn the 2-D test densities well.
FAST = {"transforms": 3, "hidden": (32, 32), "batch_size": 256, "lr": 3e-3, "max_epochs": 40,
        "patience": 10}


def make(name, **overrides):
    return db.estimators.make(name, **{**FAST, **overrides})


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These small models gain nothing from intra-op threads, and on a busy 2-core machine
    two threads now and then stall a fit 30-fold (seen: 0.8 s -> 24 s); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gaussian():
    """A correlated 2-D Gaussian with unequal scales: train, val, test and the truth."""
    mean = np.array([1.0, -2.0])
    cov = np.array([[4.0, 1.8], [1.8, 1.0]])  # correlation 0.9
    truth = stats.multivariate_normal(mean, cov)
    rng = np.random.default_rng(0)
    X, V, T = (truth.rvs(n, random_state=rng) for n in (3000, 1000, 3000))
    return X, V, T, truth


@pytest.mark.parametrize("name", FLOWS)
def test_trained_flow_integrates_to_one_on_banana(name):
    """exp(score_samples) of a flow trained on the banana sums to 1 +- 0.02 on a fine grid
    over a box holding the data's bent tail (the density is in data units)."""
    ds = db.data.load("banana", seed=0, n_train=2000, n_val=500, n_test=10)
    est = make(name).fit(ds.train, ds.val)
    gx = np.linspace(-8.0, 8.0, 641)
    gy = np.linspace(-12.0, 30.0, 1051)
    xx, yy = np.meshgrid(gx, gy)
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    cell = (gx[1] - gx[0]) * (gy[1] - gy[0])
    total = float(np.exp(est.score_samples(grid)).sum() * cell)
    assert total == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("name", FLOWS)
def test_correlated_gaussian_known_answer(name, gaussian):
    """The test log-likelihood is close to the true density's (SciPy), and the KL estimate
    mean(log p - log q) is not significantly negative (>= -3 SE)."""
    X, V, T, truth = gaussian
    est = make(name).fit(X, V)
    gap = truth.logpdf(T) - est.score_samples(T)
    se = gap.std(ddof=1) / math.sqrt(len(gap))
    assert abs(gap.mean()) < 0.03, f"KL estimate {gap.mean():.4f} +- {se:.4f}"  # seen <= 0.011
    assert gap.mean() >= -3.0 * se


@pytest.mark.parametrize("name", FLOWS)
def test_samples_are_from_the_scored_density(name):
    """Fit A, draw 3000 samples S from A, fit B (same hyperparameters) on S: on fresh
    samples T from A, mean log p_B(T) is within 0.1 nats of mean log p_A(T) (an estimate of
    KL(A || B) >= 0, small when B learns A from A's samples). Wrong sampling (a missing
    un-standardization, a mismatched direction of the flow) moves B away by nats."""
    ds = db.data.load("banana", seed=1, n_train=2000, n_val=500, n_test=10)
    a = make(name).fit(ds.train, ds.val)
    S = a.sample(3000, random_state=1)
    S_val = a.sample(500, random_state=2)
    T = a.sample(3000, random_state=3)
    b = make(name).fit(S, S_val)
    lp_a, lp_b = a.score_samples(T), b.score_samples(T)
    kl = float(np.mean(lp_a - lp_b))
    assert -0.02 < kl < 0.1, f"KL(A||B) estimate {kl:.4f}"  # seen: 0.010 to 0.025


@pytest.mark.parametrize("name", FLOWS)
def test_standardization_log_jacobian_in_data_units(name, gaussian):
    """Scaling the data by 10 shifts every log-density by exactly -d log 10: the model fit
    on 10 X sees the same standardized inputs as the one fit on X (same seed)."""
    X, V, T, _ = gaussian
    a = make(name, max_epochs=5).fit(X, V)
    b = make(name, max_epochs=5).fit(10.0 * X, 10.0 * V)
    shift = b.score_samples(10.0 * T) - a.score_samples(T)
    np.testing.assert_allclose(shift, -2.0 * math.log(10.0), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", FLOWS)
def test_one_dimensional_data_gives_a_normalized_density(name):
    """1-D data: zuko's element-wise fallback (MAF and RealNVP: a Gaussian; NSF: splines)
    gives a density that integrates to 1; MAF and RealNVP match SciPy's ML Gaussian."""
    rng = np.random.default_rng(0)
    X, V = rng.normal(3.0, 2.0, (2000, 1)), rng.normal(3.0, 2.0, (500, 1))
    est = make(name).fit(X, V)
    g = np.linspace(-17.0, 23.0, 8001)[:, None]
    total = float(np.exp(est.score_samples(g)).sum() * (g[1, 0] - g[0, 0]))
    assert total == pytest.approx(1.0, abs=1e-3)
    if name != "nsf":
        ref = stats.norm.logpdf(V[:, 0], X.mean(), X.std())
        assert np.max(np.abs(est.score_samples(V) - ref)) < 0.05


@pytest.mark.parametrize("param, value, expected", [
    ("transforms", 0, "an int >= 1"),
    ("hidden", (), "a non-empty list of ints >= 1"),
    ("hidden", (16, 0), "a non-empty list of ints >= 1"),
    ("hidden", 16, "a non-empty list of ints >= 1"),
])
@pytest.mark.parametrize("name", FLOWS)
def test_bad_hyperparameters_are_named(name, param, value, expected):
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match=f"^{name}: {param} must be {expected}; got"):
        db.estimators.make(name, **{param: value}).fit(X)


@pytest.mark.parametrize("name, param, value, expected", [
    ("maf", "randperm", 1, "True or False"),
    ("nsf", "randperm", "yes", "True or False"),
    ("nsf", "bins", 1, "an int >= 2"),
    ("realnvp", "randmask", None, "True or False"),
])
def test_bad_flow_specific_hyperparameters_are_named(name, param, value, expected):
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match=f"^{name}: {param} must be {expected}; got"):
        db.estimators.make(name, **{param: value}).fit(X)


@pytest.mark.parametrize("name", FLOWS)
def test_images_reach_a_flow_in_logit_space_where_a_dark_border_stays_finite(name):
    """A pixel that is dark in every training image (MNIST's border) and inked in a test
    image: on the dequantized pixels it sits hundreds of training SDs out; in logit space,
    where the flows see images, about 8, and the figure stays a modest bits/dim."""
    from densbench.data.base import Dataset
    from densbench.data.transforms import prepare

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(700, 6)).astype(np.uint8)
    X[:, 0] = 0
    test = X[600:].copy()
    test[0, 0] = 200
    ds = Dataset("dark_border", 0, X[:500], X[500:600], test, kind="discrete", levels=256)
    cls = db.estimators.get(name)
    assert cls.logit_space and not cls.discrete_native
    prep = prepare(ds, discrete_native=False, logit_space=cls.logit_space, seed=0)
    est = make(name, max_epochs=5, transforms=2).fit(prep.train, prep.val)
    bpd = -prep.to_data_units("test", est.score_samples(prep.test)) / (6 * math.log(2))
    # about 45 bits for the inked pixel (8 training SDs in logit space); 40 for the rest
    assert np.isfinite(bpd).all() and bpd[0] < 20.0 and np.median(bpd) < 8.0
