"""The estimator contract, checked for EVERY registered estimator (no per-model test code).

A new estimator is covered by registering it and giving it ``test_params()``.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

import densbench as db
from densbench.estimators.base import LikelihoodKind, NotFittedError
from densbench.registry import UnknownNameError

from .known_failures import KNOWN_FAILURES, SCALE_DEPENDENT

NAMES = db.estimators.names()


def _check(name: str, check: str):
    """pytest.param for (estimator, check), strict-xfail when listed in KNOWN_FAILURES."""
    reason = KNOWN_FAILURES.get((name, check))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(name, id=name, marks=marks)


def params_for(check: str):
    return [_check(n, check) for n in NAMES]


def make(name: str, **overrides):
    cls = db.estimators.get(name)
    return db.estimators.make(name, **{**cls.test_params(), **overrides})


def two_blobs(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal([-1.0, 0.0], [0.5, 0.8], size=(n // 2, 2))
    b = rng.normal([1.5, 1.0], [0.7, 0.4], size=(n - n // 2, 2))
    return rng.permutation(np.vstack([a, b]))


@pytest.fixture(scope="module")
def data():
    return two_blobs(400, 0), two_blobs(100, 1), two_blobs(50, 2)


@pytest.fixture(scope="module")
def fitted(data):
    cache = {}

    def get(name):
        if name not in cache:
            X, X_val, _ = data
            cache[name] = make(name).fit(X, X_val)
        return cache[name]

    return get


def needs_likelihood(name):
    if db.estimators.get(name).likelihood is LikelihoodKind.NONE:
        pytest.skip("implicit model: no likelihood (covered by test_no_likelihood_raises)")


@pytest.mark.parametrize("name", params_for("declared"))
def test_capabilities_declared(name):
    cls = db.estimators.get(name)
    assert cls.name == name
    assert isinstance(cls.likelihood, LikelihoodKind)
    assert isinstance(cls.can_sample, bool) and isinstance(cls.discrete_native, bool)
    assert cls.describe(), "the class docstring's first line describes it for `densbench list`"
    assert set(cls.test_params()) <= set(cls._get_param_names())
    assert "random_state" in cls._get_param_names()


@pytest.mark.parametrize("name", params_for("init_stores"))
def test_init_only_stores_params(name):
    params = db.estimators.get(name).test_params()
    est = make(name)
    got = est.get_params()
    for k, v in params.items():
        assert got[k] == v
    assert not [k for k in vars(est) if k.endswith("_") and not k.startswith("_")], \
        "__init__ must not set learned state"


@pytest.mark.parametrize("name", params_for("fit_score"))
def test_fit_returns_self_and_scores_per_row(name, data):
    X, X_val, X_test = data
    est = make(name)
    assert est.fit(X, X_val) is est
    needs_likelihood(name)
    s = est.score_samples(X_test)
    assert s.shape == (len(X_test),) and s.dtype == np.float64
    assert np.isfinite(s).all()
    assert est.score(X_test) == pytest.approx(float(np.mean(s)), rel=0, abs=1e-12)


@pytest.mark.parametrize("name", params_for("no_likelihood"))
def test_no_likelihood_raises(name, fitted, data):
    if db.estimators.get(name).likelihood is not LikelihoodKind.NONE:
        pytest.skip("has a likelihood")
    with pytest.raises(NotImplementedError, match=name):
        fitted(name).score_samples(data[2])


@pytest.mark.parametrize("name", params_for("sample"))
def test_sample_shape_and_seed(name, fitted):
    est = fitted(name)
    if not est.can_sample:
        with pytest.raises(NotImplementedError, match=name):
            est.sample(5)
        return
    a = est.sample(64, random_state=3)
    assert a.shape == (64, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, est.sample(64, random_state=3))
    assert not np.array_equal(a, est.sample(64, random_state=4))
    assert est.sample(0).shape == (0, 2)
    with pytest.raises(ValueError, match=name):
        est.sample(-1)


@pytest.mark.parametrize("name", params_for("deterministic_fit"))
def test_same_seed_same_numbers(name, data):
    X, X_val, X_test = data
    a, b = make(name, random_state=7).fit(X, X_val), make(name, random_state=7).fit(X, X_val)
    if a.likelihood is not LikelihoodKind.NONE:
        np.testing.assert_array_equal(a.score_samples(X_test), b.score_samples(X_test))
    if a.can_sample:
        np.testing.assert_array_equal(a.sample(20, random_state=1), b.sample(20, random_state=1))


@pytest.mark.parametrize("name", params_for("clone"))
def test_clone_and_get_params(name, fitted, data):
    est = fitted(name)
    c = clone(est)
    assert c.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        c.score_samples(data[2]) if c.likelihood is not LikelihoodKind.NONE else c.sample(3)
    assert isinstance(est.n_parameters(), int) and est.n_parameters() > 0


@pytest.mark.parametrize("name", params_for("unknown_param"))
def test_unknown_hyperparameter_is_named(name):
    with pytest.raises(UnknownNameError, match="not_a_param"):
        db.estimators.make(name, not_a_param=1)


def _bad_fit_inputs(X):
    nan, inf = X.copy(), X.copy()
    nan[3, 1] = np.nan
    inf[5, 0] = np.inf
    return {"nan": nan, "inf": inf, "1-D": X[:, 0], "3-D": X[None], "one row": X[:1],
            "text": [["a", "b"]]}


@pytest.mark.parametrize("bad", ["nan", "inf", "1-D", "3-D", "one row", "text"])
@pytest.mark.parametrize("name", params_for("refuse_bad_fit"))
def test_fit_refuses_bad_data(name, bad, data):
    X = _bad_fit_inputs(data[0])[bad]
    with pytest.raises(ValueError, match=f"^{name}: "):
        make(name).fit(X)


@pytest.mark.parametrize("name", params_for("refuse_bad_score"))
def test_score_refuses_bad_data(name, fitted, data):
    needs_likelihood(name)
    est, X = fitted(name), data[2]
    with pytest.raises(ValueError, match=f"^{name}: .*3 features .* fitted on 2"):
        est.score_samples(np.hstack([X, X[:, :1]]))
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=f"^{name}: .*non-finite"):
        est.score_samples(bad)
    with pytest.raises(ValueError, match=f"^{name}: "):
        est.fit(data[0], X_val=np.ones((3, 5)))


@pytest.mark.parametrize("name", params_for("normalized"))
def test_density_integrates_to_one(name, fitted):
    """exp(score_samples) integrates to 1 +- 0.02 on a fine 2-D grid (EXACT estimators)."""
    est = fitted(name)
    if est.likelihood is not LikelihoodKind.EXACT:
        pytest.skip(f"{est.likelihood.value}: a bound need not integrate to 1")
    lo, hi, m = -9.0, 9.0, 601
    g = np.linspace(lo, hi, m)
    xx, yy = np.meshgrid(g, g)
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    cell = ((hi - lo) / (m - 1)) ** 2
    total = float(np.exp(est.score_samples(grid)).sum() * cell)
    assert total == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("name", params_for("constraints_declared"))
def test_every_hyperparameter_has_declared_constraints(name):
    """Each hyperparameter is constrained once, on the class; defaults and test_params pass."""
    cls = db.estimators.get(name)
    assert set(cls.parameter_constraints()) == set(cls._get_param_names())
    cls.check_params({})
    cls.check_params(cls.test_params())


class _Junk:
    def __repr__(self) -> str:
        return "<junk>"


@pytest.mark.parametrize("name", params_for("check_params"))
def test_check_params_raises_what_fit_raises(name, data):
    """check_params (no fitting) and fit give the same uniform message for every bad value."""
    cls = db.estimators.get(name)
    for param in cls._get_param_names():
        with pytest.raises(ValueError, match=rf"^{name}: {param} must be .+; got <junk>$") \
                as before:
            cls.check_params({param: _Junk()})
        with pytest.raises(ValueError) as during:
            make(name, **{param: _Junk()}).fit(data[0], data[1])
        assert str(during.value) == str(before.value)
    with pytest.raises(UnknownNameError, match="not_a_param"):
        cls.check_params({"not_a_param": 1})


@pytest.mark.parametrize("scale", [1e155, 1e-300])
@pytest.mark.parametrize("name", params_for("any_scale"))
def test_data_at_any_finite_scale(name, scale, fitted, data):
    """Fitted to ``scale * X``, every estimator scores ``scale * x`` as it scores ``x`` minus
    d log(scale), and samples ``scale`` times its samples: no inf, no -inf, no absurd figure.

    Tolerance: ``scale * X`` is ``X`` rounded to float64 again (relative 2^-53) and the
    estimator works on it divided by a power of two, so an estimator whose fit commutes
    with scaling reproduces the unscaled figures up to the rounding of its own arithmetic
    (1e-13 nats seen); 1e-9 nats and 1e-9 relative on samples leave room for other BLAS
    builds. An estimator with a setting in absolute units (``SCALE_DEPENDENT``) fits
    slightly differently: its mean must agree to 1e-3 nats per example (a variance floor
    of 1e-6..1e-3 on variances of about 0.1-1 moves it by about that much at most; 2e-4
    seen).
    """
    X, X_val, X_test = data
    ref = fitted(name)
    est = make(name).fit(X * scale, X_val * scale)
    tol = 1e-3 if name in SCALE_DEPENDENT else 1e-9
    if est.likelihood is not LikelihoodKind.NONE:
        got = est.score_samples(X_test * scale) + X.shape[1] * np.log(scale)
        assert np.isfinite(got).all()
        want = ref.score_samples(X_test)
        assert abs(np.mean(got) - np.mean(want)) <= tol
        if name not in SCALE_DEPENDENT:
            np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    if est.can_sample:
        got = est.sample(50, random_state=0)
        assert np.isfinite(got).all()
        if name not in SCALE_DEPENDENT:
            np.testing.assert_allclose(got / scale, ref.sample(50, random_state=0),
                                       rtol=1e-9, atol=1e-9)
