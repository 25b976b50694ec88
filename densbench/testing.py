"""The estimator contract as a public tool: the checks densbench's own estimators pass.

``check_estimator(cls)`` runs every check on a class (or a registry name or spec) and
raises ``AssertionError`` naming the estimator, the check and what the contract requires;
:func:`parametrize_with_checks` makes one pytest case per (estimator, check), in the manner
of scikit-learn's ``parametrize_with_checks``::

    from densbench.testing import parametrize_with_checks

    @parametrize_with_checks(["mymodel.py:MyModel"])
    def test_contract(estimator, check):
        check(estimator)

Each check fits the class with its ``test_params()`` on a small fixed 2-D data set (two
Gaussian blobs), so that a whole suite of checks stays fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["CHECKS", "check_estimator", "parametrize_with_checks"]


def _cls(estimator: Any) -> type:
    from densbench import estimators

    return estimators.get(estimator) if isinstance(estimator, str) else \
        estimators._resolve(getattr(estimator, "__name__", "?"), estimator)


def _require(cls: type, check: str, ok: bool, requirement: str) -> None:
    if not ok:
        raise AssertionError(f"{cls.name}: check {check}: {requirement}")


def _raises(cls: type, check: str, exc: type[BaseException], pattern: str,
            fn: Callable[[], Any], requirement: str) -> str:
    try:
        fn()
    except exc as err:
        _require(cls, check, re.search(pattern, str(err)) is not None,
                 f"{requirement} (got {type(err).__name__}: {err})")
        return str(err)
    except Exception as err:
        raise AssertionError(f"{cls.name}: check {check}: {requirement} (got "
                             f"{type(err).__name__}: {err})") from err
    raise AssertionError(f"{cls.name}: check {check}: {requirement} (nothing was raised)")


def _blobs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal([-1.0, 0.0], [0.5, 0.8], size=(n // 2, 2))
    b = rng.normal([1.5, 1.0], [0.7, 0.4], size=(n - n // 2, 2))
    return rng.permutation(np.vstack([a, b]))


@lru_cache(maxsize=1)
def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _blobs(400, 0), _blobs(100, 1), _blobs(50, 2)


def _make(cls: type, **overrides: Any) -> Any:
    params = {**cls.test_params(), **overrides}
    cls.check_param_names(params)
    return cls(**params)


@lru_cache(maxsize=4)
def _fitted(cls: type) -> Any:
    X, X_val, _ = _data()
    return _make(cls).fit(X, X_val)


def _has_likelihood(cls_or_est: Any) -> bool:
    from densbench.estimators.base import LikelihoodKind

    return cls_or_est.likelihood is not LikelihoodKind.NONE


# -- the checks ------------------------------------------------------------------------

def check_declared(cls: type) -> None:
    """Capabilities are declared on the class; ``test_params`` are hyperparameters."""
    from densbench.estimators.base import LikelihoodKind

    c = "declared"
    _require(cls, c, isinstance(cls.likelihood, LikelihoodKind),
             "the class attribute likelihood must be a LikelihoodKind")
    _require(cls, c, isinstance(cls.can_sample, bool) and isinstance(cls.discrete_native, bool),
             "can_sample and discrete_native must be class attributes, True or False")
    _require(cls, c, bool(cls.describe()),
             "the class docstring's first line must describe it (densbench list shows it)")
    names = set(cls._get_param_names())
    _require(cls, c, set(cls.test_params()) <= names,
             "test_params() may only name hyperparameters (keyword arguments of __init__)")
    _require(cls, c, "random_state" in names, "every estimator takes random_state")


def check_init_stores(cls: type) -> None:
    """``__init__`` only stores its keyword arguments: no learned state."""
    est = _make(cls)
    got = est.get_params()
    for key, value in cls.test_params().items():
        _require(cls, "init_stores", got.get(key) == value,
                 f"get_params() must return what __init__ was given ({key}={value!r}; got "
                 f"{got.get(key)!r})")
    learned = [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]
    _require(cls, "init_stores", not learned,
             f"__init__ must only store hyperparameters, not set learned state {learned}")


def check_fit_score(cls: type) -> None:
    """``fit`` returns self; ``score_samples`` is one finite float64 per row; ``score`` is
    their mean."""
    c = "fit_score"
    X, X_val, X_test = _data()
    est = _make(cls)
    _require(cls, c, est.fit(X, X_val) is est, "fit must return self")
    if not _has_likelihood(est):
        return
    s = est.score_samples(X_test)
    _require(cls, c, isinstance(s, np.ndarray) and s.shape == (len(X_test),)
             and s.dtype == np.float64,
             f"score_samples must return a float64 array of shape (n,) = ({len(X_test)},)")
    _require(cls, c, bool(np.isfinite(s).all()), "score_samples must be finite")
    _require(cls, c, abs(est.score(X_test) - float(np.mean(s))) <= 1e-12,
             "score must be the mean of score_samples")


def check_no_likelihood(cls: type) -> None:
    """An implicit model (``LikelihoodKind.NONE``) raises ``NotImplementedError`` naming
    itself from ``score_samples``."""
    if _has_likelihood(cls):
        return
    _raises(cls, "no_likelihood", NotImplementedError, re.escape(cls.name),
            lambda: _fitted(cls).score_samples(_data()[2]),
            "score_samples of an implicit model must raise NotImplementedError naming it")


def check_sample(cls: type) -> None:
    """``sample(n, random_state)`` is (n, d), finite, the same for the same seed and different
    for another; a class that cannot sample says so."""
    c = "sample"
    est = _fitted(cls)
    if not est.can_sample:
        _raises(cls, c, NotImplementedError, re.escape(cls.name), lambda: est.sample(5),
                "sample of a class with can_sample = False must raise NotImplementedError")
        return
    a = est.sample(64, random_state=3)
    _require(cls, c, a.shape == (64, 2) and bool(np.isfinite(a).all()),
             "sample(64) must return a finite (64, d) array")
    _require(cls, c, np.array_equal(a, est.sample(64, random_state=3)),
             "sample(n, random_state=s) must return the same samples for the same seed")
    _require(cls, c, not np.array_equal(a, est.sample(64, random_state=4)),
             "sample must return different samples for a different seed")
    _require(cls, c, est.sample(0).shape == (0, 2), "sample(0) must return shape (0, d)")
    _raises(cls, c, ValueError, re.escape(cls.name), lambda: est.sample(-1),
            "sample(-1) must raise ValueError naming the estimator")


def check_deterministic_fit(cls: type) -> None:
    """The same ``random_state`` gives the same numbers."""
    X, X_val, X_test = _data()
    a, b = (_make(cls, random_state=7).fit(X, X_val) for _ in range(2))
    if _has_likelihood(a):
        _require(cls, "deterministic_fit",
                 np.array_equal(a.score_samples(X_test), b.score_samples(X_test)),
                 "two fits with the same random_state must give the same score_samples")
    if a.can_sample:
        _require(cls, "deterministic_fit",
                 np.array_equal(a.sample(20, random_state=1), b.sample(20, random_state=1)),
                 "two fits with the same random_state must give the same samples")


def check_clone(cls: type) -> None:
    """``sklearn.base.clone`` gives an unfitted copy with the same hyperparameters;
    ``n_parameters`` is a positive int."""
    from sklearn.base import clone

    from densbench.estimators.base import NotFittedError

    c = "clone"
    est = _fitted(cls)
    copy = clone(est)
    _require(cls, c, copy.get_params() == est.get_params(),
             "clone must keep the hyperparameters (get_params)")
    use = (lambda: copy.score_samples(_data()[2])) if _has_likelihood(copy) \
        else (lambda: copy.sample(3))
    _raises(cls, c, NotFittedError, "", use,
            "an unfitted estimator (a clone) must raise NotFittedError")
    n = est.n_parameters()
    _require(cls, c, isinstance(n, int) and n > 0, "n_parameters() must be an int > 0")


def check_unknown_param(cls: type) -> None:
    """An unknown hyperparameter is refused by name."""
    from densbench.registry import UnknownNameError

    _raises(cls, "unknown_param", UnknownNameError, "not_a_param",
            lambda: cls.check_params({"not_a_param": 1}),
            "an unknown hyperparameter must raise UnknownNameError naming it")


def check_refuse_bad_fit(cls: type) -> None:
    """``fit`` refuses NaN, inf, wrong shapes, too few rows and text with a ``ValueError``
    that starts with the estimator's name."""
    X = _data()[0]
    nan, inf = X.copy(), X.copy()
    nan[3, 1] = np.nan
    inf[5, 0] = np.inf
    for what, bad in (("NaN", nan), ("inf", inf), ("1-D", X[:, 0]), ("3-D", X[None]),
                      ("one row", X[:1]), ("text", [["a", "b"]])):
        _raises(cls, "refuse_bad_fit", ValueError, f"^{re.escape(cls.name)}: ",
                lambda bad=bad: _make(cls).fit(bad),
                f"fit on data with {what} must raise ValueError starting '{cls.name}: '")


def check_refuse_bad_score(cls: type) -> None:
    """``score_samples`` refuses a wrong number of features and NaN; ``fit`` a validation
    set of another dimension."""
    c, who = "refuse_bad_score", re.escape(cls.name)
    if not _has_likelihood(cls):
        return
    est, X = _fitted(cls), _data()[2]
    _raises(cls, c, ValueError, f"^{who}: .*3 features .* fitted on 2",
            lambda: est.score_samples(np.hstack([X, X[:, :1]])),
            "score_samples on a different number of features must raise ValueError naming "
            "both")
    bad = X.copy()
    bad[0, 0] = np.nan
    _raises(cls, c, ValueError, f"^{who}: .*non-finite", lambda: est.score_samples(bad),
            "score_samples on NaN must raise ValueError saying non-finite")
    _raises(cls, c, ValueError, f"^{who}: ",
            lambda: _make(cls).fit(_data()[0], X_val=np.ones((3, 5))),
            "fit with X_val of another dimension must raise ValueError naming the estimator")


def check_normalized(cls: type) -> None:
    """An EXACT density integrates to 1 +- 0.02 on a fine 2-D grid."""
    from densbench.estimators.base import LikelihoodKind

    if cls.likelihood is not LikelihoodKind.EXACT:
        return
    lo, hi, m = -9.0, 9.0, 601
    g = np.linspace(lo, hi, m)
    xx, yy = np.meshgrid(g, g)
    total = float(np.exp(_fitted(cls).score_samples(np.column_stack([xx.ravel(),
                                                                      yy.ravel()]))).sum()
                  * ((hi - lo) / (m - 1)) ** 2)
    _require(cls, "normalized", abs(total - 1.0) <= 0.02,
             f"an exact log-density must integrate to 1 (got {total:.4f} on [-9, 9]^2); "
             "declare likelihood = LOWER_BOUND if it is a bound")


def check_constraints_declared(cls: type) -> None:
    """Every hyperparameter has declared constraints; defaults and test_params pass."""
    missing = set(cls._get_param_names()) - set(cls.parameter_constraints())
    _require(cls, "constraints_declared", not missing,
             f"every hyperparameter needs constraints in _parameter_constraints; none for "
             f"{', '.join(sorted(missing))}")
    cls.check_params({})
    cls.check_params(cls.test_params())


class _Junk:
    def __repr__(self) -> str:
        return "<junk>"


def check_check_params(cls: type) -> None:
    """``check_params`` (no fitting) and ``fit`` raise the same uniform message for a bad
    value of every hyperparameter."""
    c = "check_params"
    X, X_val, _ = _data()
    for param in cls._get_param_names():
        before = _raises(cls, c, ValueError, rf"^{re.escape(cls.name)}: {param} must be .+; "
                         r"got <junk>$", lambda p=param: cls.check_params({p: _Junk()}),
                         f"check_params must refuse a bad {param} as '<name>: {param} must "
                         "be ...; got <junk>'")
        during = _raises(cls, c, ValueError, "",
                         lambda p=param: _make(cls, **{p: _Junk()}).fit(X, X_val),
                         f"fit must refuse a bad {param}")
        _require(cls, c, during == before,
                 f"fit and check_params must give the same message for a bad {param}")


def _largest_scale() -> float:
    """The scale that takes the check data's largest magnitude to 2^1023, the largest
    power of two a float64 holds (1.8e308 is the largest float64)."""
    top = max(float(np.max(np.abs(a))) for a in _data())
    return 2.0 ** 1023 / top


def _scale_check(scale: float | None) -> Callable[[type, bool], None]:
    """The check at ``scale`` (None: :func:`_largest_scale`)."""
    name = f"any_scale[{'largest' if scale is None else f'{scale:g}'}]"

    def check(cls: type, scale_dependent: bool = False) -> None:
        """Fitted to ``scale * X``, an estimator scores ``scale * x`` as it scores ``x``
        minus d log(scale) and samples ``scale`` times its samples (1e-9; 1e-3 nats in the
        mean for an estimator with a setting in absolute units)."""
        c, factor = name, _largest_scale() if scale is None else scale
        X, X_val, X_test = _data()
        ref = _fitted(cls)
        est = _make(cls).fit(X * factor, X_val * factor)
        tol = 1e-3 if scale_dependent else 1e-9
        if _has_likelihood(est):
            got = est.score_samples(X_test * factor) + X.shape[1] * np.log(factor)
            want = ref.score_samples(X_test)
            _require(cls, c, bool(np.isfinite(got).all()) and
                     abs(np.mean(got) - np.mean(want)) <= tol,
                     "figures must be in the data's units at any finite scale (mean "
                     f"log-density of scaled data off by {abs(np.mean(got) - np.mean(want)):g})")
            if not scale_dependent:
                _require(cls, c, np.allclose(got, want, rtol=0, atol=tol),
                         "per-row log-densities must follow the scale exactly")
        if est.can_sample:
            try:
                got = est.sample(50, random_state=0)
            except FloatingPointError as exc:  # near 1.8e308 a sample may not fit float64
                _require(cls, c, scale is None and str(exc).startswith(f"{cls.name}: "),
                         f"samples must be finite (got FloatingPointError: {exc})")
                return
            _require(cls, c, bool(np.isfinite(got).all()), "samples must be finite")
            if not scale_dependent:
                _require(cls, c, np.allclose(got / factor, ref.sample(50, random_state=0),
                                             rtol=1e-9, atol=1e-9),
                         "samples must scale with the data")
    return check


#: check name -> check(cls); the names are those ``known_failures`` entries use.
CHECKS: dict[str, Callable[..., None]] = {
    "declared": check_declared, "init_stores": check_init_stores,
    "fit_score": check_fit_score, "no_likelihood": check_no_likelihood,
    "sample": check_sample, "deterministic_fit": check_deterministic_fit,
    "clone": check_clone, "unknown_param": check_unknown_param,
    "refuse_bad_fit": check_refuse_bad_fit, "refuse_bad_score": check_refuse_bad_score,
    "normalized": check_normalized, "constraints_declared": check_constraints_declared,
    "check_params": check_check_params,
    "any_scale[1e+155]": _scale_check(1e155), "any_scale[1e-300]": _scale_check(1e-300),
    "any_scale[largest]": _scale_check(None),
}


def _run(check: str, cls: type, scale_dependent: bool) -> None:
    fn = CHECKS[check]
    fn(cls, scale_dependent) if check.startswith("any_scale") else fn(cls)


def check_estimator(estimator: Any, *, scale_dependent: bool = False) -> None:
    """Run every check on ``estimator`` (a class, a registry name or a spec); raise
    ``AssertionError`` at the first that fails, naming it and what the contract requires.
    ``scale_dependent``: the fit has a setting in absolute units (see the scale check)."""
    cls = _cls(estimator)
    for check in CHECKS:
        _run(check, cls, scale_dependent)


def parametrize_with_checks(estimators: Iterable[Any], *,
                            known_failures: Mapping[tuple[str, str], str] | None = None,
                            scale_dependent: Iterable[str] = ()) -> Any:
    """A ``pytest.mark.parametrize`` over (estimator, check) for a test
    ``def test_x(estimator, check): check(estimator)``; a pair in ``known_failures``
    ((name, check) -> reason) runs as a strict xfail, so a fix shows up."""
    import pytest

    known, loose = dict(known_failures or {}), set(scale_dependent)
    params = []
    for est in estimators:
        cls = _cls(est)
        for check in CHECKS:
            def run(cls: type, check: str = check) -> None:
                _run(check, cls, cls.name in loose)

            reason = known.get((cls.name, check))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(cls, run, id=f"{cls.name}-{check}", marks=marks))
    return pytest.mark.parametrize(("estimator", "check"), params)
