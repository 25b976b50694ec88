"""The estimator contract as a public tool: the checks densbench's own estimators pass.

``check_estimator(cls)`` runs every check on a class (or a registry name or spec) and
raises ``AssertionError`` naming the estimator, the check and what the contract requires;
:func:`parametrize_with_checks` makes one pytest case per (estimator, check), in the manner
of scikit-learn's ``parametrize_with_checks``::

    from densbench.testing import parametrize_with_checks

    @parametrize_with_checks(["mymodel.py:MyModel"])
    def test_contract(estimator, check):
        check(estimator)

Each check fits the class with its ``test_params()`` on a small fixed data set, so that a
whole suite of checks stays fast: two Gaussian blobs in 2-D, or, for a class that reads
rows as images (``image_model``), tiny images of the ``image_shape`` its ``test_params()``
give. A discrete-native image model sees their integer levels (``levels`` from its
``test_params()``), any other the view the runner would give it (uniformly dequantized,
in logit space for a ``logit_space`` class: :func:`densbench.data.transforms.prepare`).
Checks read this data through :func:`check_data`. Image models get checks of their own:
a row of the wrong width refused, a discrete model's samples are levels, and its
probabilities over EVERY image of a tiny size (2x2) sum to 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["CHECKS", "check_data", "check_estimator", "parametrize_with_checks", "tiny_images"]


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


#: Levels of the tiny images a continuous image model sees dequantized.
_CONTINUOUS_IMAGE_LEVELS = 4
#: The tiny image (height, width) over all of whose images a discrete model must sum to 1.
_TINY_IMAGE = (2, 2)
#: Most images the sums-to-1 check enumerates (fewer levels are used above it).
_MOST_IMAGES = 65_536


def _image_spec(cls: type) -> tuple[tuple[int, ...], int] | None:
    """``(image_shape, levels)`` of an image model's check data (from its
    ``test_params()``), or None for a class that reads flat rows."""
    if not getattr(cls, "image_model", False):
        return None
    params = cls.test_params()
    shape = params.get("image_shape")
    _require(cls, "declared", isinstance(shape, tuple) and len(shape) in (2, 3)
             and all(isinstance(v, int) and v >= 1 for v in shape),
             "test_params() of an image model must give image_shape, (H, W) or (H, W, C)")
    if not cls.discrete_native:
        return shape, _CONTINUOUS_IMAGE_LEVELS
    levels = params.get("levels")
    _require(cls, "declared", isinstance(levels, int) and levels >= 2,
             "test_params() of a discrete-native image model must give levels (an int >= 2)")
    return shape, levels


def tiny_images(n: int, image_shape: tuple[int, ...], levels: int, seed: int) -> np.ndarray:
    """``n`` images of ``image_shape`` as rows (channels last) of integer levels
    ``0 .. levels - 1`` (float64): a random intensity ramp across each image plus pixel
    noise, so that neighbouring pixels are correlated as in real images.

    Example:
        >>> X = tiny_images(3, (2, 2), 4, seed=0)
        >>> X.shape, bool(np.all(X == np.round(X)) and X.min() >= 0 and X.max() <= 3)
        ((3, 4), True)
    """
    h, w = image_shape[:2]
    c = image_shape[2] if len(image_shape) == 3 else 1
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2,
                             indexing="ij")
    slope = rng.normal(0.0, 1.5, size=(n, 3, 1, 1, 1))
    logits = (slope[:, 0] * rows[..., None] + slope[:, 1] * cols[..., None] + slope[:, 2]
              + 0.7 * rng.normal(size=(n, h, w, c)))
    levels_ = np.floor(levels / (1.0 + np.exp(-logits)))
    return np.minimum(levels_, levels - 1).reshape(n, h * w * c)


@lru_cache(maxsize=32)
def _image_data(cls: type, image_shape: tuple[int, ...],
                levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tiny images in the class's view: the levels for a discrete-native class, else what
    the runner's :func:`~densbench.data.transforms.prepare` makes of them."""
    from densbench.data.base import Dataset
    from densbench.data.transforms import prepare

    splits = [tiny_images(n, image_shape, levels, seed) for n, seed in
              ((400, 10), (100, 11), (50, 12))]
    # lambda 0.05 (CIFAR-10's) keeps the check data in logit space within a few units
    ds = Dataset("check_images", 0, *splits, kind="discrete", levels=levels,
                 image_shape=image_shape, logit_lambda=0.05)
    prep = prepare(ds, discrete_native=cls.discrete_native, seed=0,
                   logit_space=getattr(cls, "logit_space", False))
    return prep.train, prep.val, prep.test


def check_data(cls: type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (train, val, test) rows the checks fit and score ``cls`` on: two 2-D Gaussian
    blobs, or tiny images for an image model (see the module docstring)."""
    spec = _image_spec(cls)
    return _data() if spec is None else _image_data(cls, *spec)


def _make(cls: type, **overrides: Any) -> Any:
    params = {**cls.test_params(), **overrides}
    cls.check_param_names(params)
    return cls(**params)


@lru_cache(maxsize=4)
def _fitted(cls: type) -> Any:
    X, X_val, _ = check_data(cls)
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
    flags = ("can_sample", "discrete_native", "image_model", "logit_space")
    _require(cls, c, all(isinstance(getattr(cls, f, False), bool) for f in flags),
             f"{', '.join(flags)} must be class attributes, True or False")
    _require(cls, c, bool(cls.describe()),
             "the class docstring's first line must describe it (densbench list shows it)")
    names = set(cls._get_param_names())
    _require(cls, c, set(cls.test_params()) <= names,
             "test_params() may only name hyperparameters (keyword arguments of __init__)")
    _require(cls, c, "random_state" in names, "every estimator takes random_state")
    if cls.image_model:
        _require(cls, c, "image_shape" in names,
                 "an image model takes image_shape (the run passes it) as a hyperparameter")
        _image_spec(cls)


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
    X, X_val, X_test = check_data(cls)
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
            lambda: _fitted(cls).score_samples(check_data(cls)[2]),
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
    d = check_data(cls)[0].shape[1]
    a = est.sample(64, random_state=3)
    _require(cls, c, a.shape == (64, d) and bool(np.isfinite(a).all()),
             f"sample(64) must return a finite (64, d) = (64, {d}) array")
    spec = _image_spec(cls)
    if spec is not None and cls.discrete_native:
        top = spec[1] - 1
        _require(cls, c, bool(np.all((a == np.round(a)) & (a >= 0) & (a <= top))),
                 f"samples of a discrete image model must be its levels 0..{top}")
    _require(cls, c, np.array_equal(a, est.sample(64, random_state=3)),
             "sample(n, random_state=s) must return the same samples for the same seed")
    _require(cls, c, not np.array_equal(a, est.sample(64, random_state=4)),
             "sample must return different samples for a different seed")
    _require(cls, c, est.sample(0).shape == (0, d), "sample(0) must return shape (0, d)")
    _raises(cls, c, ValueError, re.escape(cls.name), lambda: est.sample(-1),
            "sample(-1) must raise ValueError naming the estimator")


def check_deterministic_fit(cls: type) -> None:
    """The same ``random_state`` gives the same numbers."""
    X, X_val, X_test = check_data(cls)
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
    use = (lambda: copy.score_samples(check_data(cls)[2])) if _has_likelihood(copy) \
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
    that starts with the estimator's name; an image model also rows of another width than
    its image shape, a discrete one values that are not its levels."""
    X = check_data(cls)[0]
    nan, inf = X.copy(), X.copy()
    nan[3, 1] = np.nan
    inf[5, 0] = np.inf
    cases = [("NaN", nan), ("inf", inf), ("1-D", X[:, 0]), ("3-D", X[None]),
             ("one row", X[:1]), ("text", [["a", "b"]])]
    spec = _image_spec(cls)
    if spec is not None:
        cases.append(("rows one value short of the image shape", X[:, :-1]))
        if cls.discrete_native:
            high, half = X.copy(), X.copy()
            high[2, 0], half[4, 1] = spec[1], 0.5
            cases += [(f"a level {spec[1]} (levels are 0..{spec[1] - 1})", high),
                      ("a level 0.5", half)]
    for what, bad in cases:
        _raises(cls, "refuse_bad_fit", ValueError, f"^{re.escape(cls.name)}: ",
                lambda bad=bad: _make(cls).fit(bad),
                f"fit on data with {what} must raise ValueError starting '{cls.name}: '")


def check_refuse_bad_score(cls: type) -> None:
    """``score_samples`` refuses a wrong number of features and NaN; ``fit`` a validation
    set of another dimension."""
    c, who = "refuse_bad_score", re.escape(cls.name)
    if not _has_likelihood(cls):
        return
    est, X = _fitted(cls), check_data(cls)[2]
    d = X.shape[1]
    _raises(cls, c, ValueError, f"^{who}: .*{d + 1} features .* fitted on {d}",
            lambda: est.score_samples(np.hstack([X, X[:, :1]])),
            "score_samples on a different number of features must raise ValueError naming "
            "both")
    bad = X.copy()
    bad[0, 0] = np.nan
    _raises(cls, c, ValueError, f"^{who}: .*non-finite", lambda: est.score_samples(bad),
            "score_samples on NaN must raise ValueError saying non-finite")
    _raises(cls, c, ValueError, f"^{who}: ",
            lambda: _make(cls).fit(check_data(cls)[0], X_val=np.ones((3, d + 1))),
            "fit with X_val of another dimension must raise ValueError naming the estimator")


def check_normalized(cls: type) -> None:
    """An EXACT density integrates to 1 +- 0.02 on a fine 2-D grid; a continuous image
    model's, fitted to 2x2 images, by importance sampling (see :func:`_image_integral`).
    A discrete image model is checked by ``sums_to_one``."""
    from densbench.estimators.base import LikelihoodKind

    if cls.likelihood is not LikelihoodKind.EXACT:
        return
    spec = _image_spec(cls)
    if spec is not None:
        if not cls.discrete_native:
            _image_integral(cls, spec)
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


def _tiny_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """:data:`_TINY_IMAGE` with the channels of ``shape``."""
    return _TINY_IMAGE + tuple(shape[2:])


def _image_integral(cls: type, spec: tuple[tuple[int, ...], int]) -> None:
    """The integral of a continuous image model fitted to 2x2 images, estimated by
    importance sampling (SciPy's Gaussian KDE of 2,000 of the model's samples, mixed half
    and half with a Gaussian of four times their covariance, so the proposal's tails are
    wider than the model's; 20,000 draws): within 0.03 + 3 standard errors of 1."""
    from scipy import stats
    from scipy.special import logsumexp

    shape = _tiny_shape(spec[0])
    X, X_val, _ = _image_data(cls, shape, spec[1])
    est = _make(cls, image_shape=shape).fit(X, X_val)
    own = est.sample(2000, random_state=0)
    kde = stats.gaussian_kde(own.T)
    wide = stats.multivariate_normal(own.mean(0), 4.0 * np.cov(own.T), allow_singular=True)
    n, rng = 20_000, np.random.default_rng(0)
    draws = np.vstack([kde.resample(n // 2, seed=rng).T,
                       wide.rvs(n - n // 2, random_state=rng).reshape(n - n // 2, -1)])
    log_q = logsumexp([kde.logpdf(draws.T), wide.logpdf(draws)], axis=0) - np.log(2.0)
    w = np.exp(est.score_samples(draws) - log_q)
    total, se = float(w.mean()), float(w.std(ddof=1) / np.sqrt(n))
    _require(cls, "normalized", abs(total - 1.0) <= 0.03 + 3.0 * se,
             f"an exact log-density must integrate to 1 (importance sampling on 2x2 images "
             f"gave {total:.4f} +- {se:.4f}); declare likelihood = LOWER_BOUND if it is a "
             "bound")


def _every_image(shape: tuple[int, ...], levels: int) -> np.ndarray:
    """Every image of ``shape`` at ``levels`` levels, one per row (float64)."""
    d = int(np.prod(shape))
    grids = np.meshgrid(*[np.arange(levels, dtype=np.float64)] * d, indexing="ij")
    return np.column_stack([g.ravel() for g in grids])


def check_sums_to_one(cls: type) -> None:
    """A discrete image model, fitted to 2x2 images, gives EVERY 2x2 image a probability,
    and they sum to 1 (1e-4; EXACT), to at most 1 (a LOWER_BOUND), or to at most 1.25 (a
    STOCHASTIC_BOUND: an importance-weighted estimate of each probability is unbiased, so
    the sum is 1 on average, and a decoder that is not normalized is far above it). The
    levels are the model's test levels, or 2 where those make more than 65,536 images."""
    from densbench.estimators.base import LikelihoodKind

    spec = _image_spec(cls)
    if spec is None or not cls.discrete_native or not _has_likelihood(cls):
        return
    shape = _tiny_shape(spec[0])
    d = int(np.prod(shape))
    levels = spec[1] if spec[1] ** d <= _MOST_IMAGES else 2
    X, X_val, _ = _image_data(cls, shape, levels)
    est = _make(cls, image_shape=shape, levels=levels).fit(X, X_val)
    total = float(np.exp(est.score_samples(_every_image(shape, levels))).sum())
    kind = cls.likelihood
    ok = {LikelihoodKind.EXACT: abs(total - 1.0) <= 1e-4,
          LikelihoodKind.LOWER_BOUND: total <= 1.0 + 1e-4}.get(kind, total <= 1.25)
    want = {LikelihoodKind.EXACT: "1 (1e-4)", LikelihoodKind.LOWER_BOUND: "at most 1"}
    _require(cls, "sums_to_one", ok,
             f"the probabilities of all {levels ** d} images of shape {shape} at {levels} "
             f"levels must sum to {want.get(kind, 'at most 1.25')} (got {total:.6f})")


def _binary_draws(cls: type) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Binary (train, val, test) rows of the width of ``cls``'s check data, and the pixel
    means the training rows were drawn from (tiny grey images for an image model)."""
    width = check_data(cls)[0].shape[1]
    spec = _image_spec(cls)
    rng = np.random.default_rng(13)
    means = (rng.uniform(0.05, 0.95, size=(500, width)) if spec is None
             else tiny_images(500, spec[0], 256, seed=13) / 255.0)
    X = (rng.random(means.shape) < means).astype(np.float64)
    return X[:400], X[400:450], X[450:], means[:400]


def check_redraws_binarization(cls: type) -> None:
    """A class that declares ``redraws_binarization`` takes ``fit(X, X_val,
    binarize_from=means)``: a model of binary levels trains on fresh draws of the means
    (seeded: the same ``random_state`` gives the same numbers; not those of a fit of ``X``
    alone); a class that models no binary levels refuses it, naming itself."""
    if not getattr(cls, "redraws_binarization", False):
        return
    c = "redraws_binarization"
    X, X_val, X_test, means = _binary_draws(cls)
    if not (cls.discrete_native and "levels" in set(cls._get_param_names())):
        _raises(cls, c, ValueError, re.escape(cls.name) + ": binarize_from",
                lambda: _make(cls).fit(X, X_val, binarize_from=means),
                "a class that models no binary levels must refuse binarize_from by name")
        return
    fits = [_make(cls, levels=2, random_state=7).fit(X, X_val, **kw)
            for kw in ({"binarize_from": means}, {"binarize_from": means}, {})]
    redrawn, again, once = (f.score_samples(X_test) for f in fits)
    _require(cls, c, np.array_equal(redrawn, again),
             "two fits with binarize_from and the same random_state must give the same "
             "score_samples")
    _require(cls, c, not np.array_equal(redrawn, once),
             "fit with binarize_from must train on fresh draws of the means, not on X")


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
    X, X_val, _ = check_data(cls)
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


def _largest_scale(cls: type) -> float:
    """The scale that takes the check data's largest magnitude to 2^1023, the largest
    power of two a float64 holds (1.8e308 is the largest float64)."""
    top = max(float(np.max(np.abs(a))) for a in check_data(cls))
    return 2.0 ** 1023 / top


def _scale_check(scale: float | None) -> Callable[[type, bool], None]:
    """The check at ``scale`` (None: :func:`_largest_scale`)."""
    name = f"any_scale[{'largest' if scale is None else f'{scale:g}'}]"

    def check(cls: type, scale_dependent: bool = False) -> None:
        """Fitted to ``scale * X``, an estimator scores ``scale * x`` as it scores ``x``
        minus d log(scale) and samples ``scale`` times its samples (1e-9; 1e-3 nats in the
        mean for an estimator with a setting in absolute units). Not for a discrete image
        model: its data are levels, which have no scale."""
        if _image_spec(cls) is not None and cls.discrete_native:
            return
        c, factor = name, _largest_scale(cls) if scale is None else scale
        X, X_val, X_test = check_data(cls)
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
    "normalized": check_normalized, "sums_to_one": check_sums_to_one,
    "redraws_binarization": check_redraws_binarization,
    "constraints_declared": check_constraints_declared,
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
