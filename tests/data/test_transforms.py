import math

import numpy as np
import pytest
from scipy import stats

import densbench as db
from densbench.data.base import Dataset
from densbench.data.transforms import (
    FIGURE_CONTINUOUS,
    FIGURE_DEQUANTIZED,
    FIGURE_DISCRETE,
    bits_per_dim,
    prepare,
)


def _discrete(levels=4, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    p = np.array([0.1, 0.2, 0.3, 0.4])[:levels]
    p = p / p.sum()
    X = rng.choice(levels, size=(n, 1), p=p).astype(np.float64)
    return Dataset(name="toy", seed=0, train=X, val=X[:100], test=X[:500], kind="discrete",
                   levels=levels), p


def test_continuous_data_pass_unchanged():
    ds = db.data.load("banana", seed=0, n_train=50, n_val=10, n_test=10)
    p = prepare(ds, discrete_native=False)
    assert p.figure == FIGURE_CONTINUOUS
    assert p.train is ds.train
    assert not p.log_jacobian["test"].any()


def test_discrete_native_models_see_levels():
    ds, _ = _discrete()
    p = prepare(ds, discrete_native=True)
    assert p.figure == FIGURE_DISCRETE
    np.testing.assert_array_equal(p.test, ds.test)


def test_dequantized_bound_is_below_and_close_to_the_discrete_log_probability():
    """A density that is uniform within each level's cell makes the bound exact: its
    log-density on [0,1) is log(L p_k); adding the log-Jacobian -log L gives log p_k."""
    ds, p_true = _discrete()
    prep = prepare(ds, discrete_native=False, seed=0)
    assert prep.figure == FIGURE_DEQUANTIZED
    y = prep.test[:, 0]
    assert (y >= 0).all() and (y < 1).all()
    k = np.floor(y * 4).astype(int)
    np.testing.assert_array_equal(k, ds.test[:, 0].astype(int))
    piecewise = np.log(4 * p_true[k])
    reported = prep.to_data_units("test", piecewise)
    np.testing.assert_allclose(reported, np.log(p_true[ds.test[:, 0].astype(int)]))
    # a smooth density on [0,1) gives a LOWER figure than the true discrete log-probability
    smooth = stats.beta(2.0, 1.2).logpdf(y)
    assert prep.to_data_units("test", smooth).mean() < np.log(p_true[k]).mean()


def test_dequantization_is_reproducible_per_seed():
    ds, _ = _discrete()
    a, b, c = (prepare(ds, discrete_native=False, seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.train, b.train)
    assert not np.array_equal(a.train, c.train)


def test_bits_per_dim():
    assert bits_per_dim(-8 * math.log(2), 4) == pytest.approx(2.0)
