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


def test_logit_log_jacobian_is_exact_against_finite_differences():
    from densbench.data.transforms import logit_transform

    rng = np.random.default_rng(3)
    for lam in (1e-6, 0.05):
        y = np.vstack([rng.random((4, 5)), [[0.0, 1e-9, 0.5, 1.0 - 1e-9, 0.999]]])
        z, ldj = logit_transform(y, lam)
        for row, want in zip(y, ldj, strict=True):
            # the full Jacobian by central differences, not only its diagonal
            h = 1e-7 * np.minimum(1.0, np.minimum(row + 1e-3, 1.0 - row + 1e-3))
            J = np.empty((5, 5))
            for j in range(5):
                e = np.zeros(5)
                e[j] = h[j]
                J[:, j] = (logit_transform((row + e)[None], lam)[0][0]
                           - logit_transform((row - e)[None], lam)[0][0]) / (2 * h[j])
            sign, logdet = np.linalg.slogdet(J)
            assert sign > 0 and logdet == pytest.approx(want, rel=1e-6, abs=1e-6)
    with pytest.raises(ValueError, match=r"lambda must be in \(0, 0.5\); got 0.5"):
        logit_transform(y, 0.5)


def test_logit_space_figure_is_the_discrete_log_probability_of_a_cell_uniform_density():
    """A density uniform within each level's cell, pushed into logit space: q_z(z) =
    L p_k / |dz/dy|. prepare's log-Jacobian brings it back to log p_k exactly; by hand,
    for one row: -log 4 + log(1 - 2 lambda) - log s - log(1 - s)."""
    ds, p_true = _discrete()
    ds = Dataset(name="toy", seed=0, train=ds.train, val=ds.val, test=ds.test,
                 kind="discrete", levels=4, logit_lambda=0.05)
    prep = prepare(ds, discrete_native=False, logit_space=True, seed=0)
    assert prep.transform == ("uniform dequantization, (x + u) / 4; logit transform, "
                              "logit(0.05 + (1 - 2 * 0.05) y)")
    z = prep.test[:, 0]
    y = (1.0 / (1.0 + np.exp(-z)) - 0.05) / 0.9            # the dequantized pixel
    k = ds.test[:, 0].astype(int)
    np.testing.assert_array_equal(np.floor(y * 4).astype(int), k)
    np.testing.assert_array_equal(prep.to_data_space(prep.test), ds.test)
    s = 0.05 + 0.9 * y
    by_hand = -math.log(4) + math.log(0.9) - np.log(s) - np.log(1 - s)
    np.testing.assert_allclose(prep.log_jacobian["test"], by_hand, rtol=1e-12)
    q_z = np.log(4 * p_true[k]) - (math.log(0.9) - np.log(s) - np.log(1 - s))
    np.testing.assert_allclose(prep.to_data_units("test", q_z), np.log(p_true[k]),
                               rtol=1e-12)


def test_logit_lambda_comes_from_the_dataset_else_the_default():
    from densbench.data.transforms import DEFAULT_LOGIT_LAMBDA

    ds, _ = _discrete()
    assert ds.logit_lambda is None and DEFAULT_LOGIT_LAMBDA == 1e-6
    prep = prepare(ds, discrete_native=False, logit_space=True, seed=0)
    assert prep.logit_lambda == 1e-6 and "logit(1e-06 + (1 - 2 * 1e-06) y)" in prep.transform
    assert prepare(ds, discrete_native=True, logit_space=True).transform == "identity"
    assert db.data.info("cifar10").logit_lambda == 0.05
    assert db.data.load("digits").logit_lambda == 1e-6
