"""The estimator contract every densbench estimator follows.

Close to scikit-learn's density estimators: keyword-only ``__init__`` that only stores
hyperparameters, validation in :meth:`DensityEstimator.fit`, learned state ending in ``_``,
``score_samples`` one log-density per row, and, unlike scikit-learn, ``score`` always the
mean and ``sample`` always seeded.

Subclasses implement ``_fit``, ``_score_samples`` (one batch, float64 ndarray in and out)
and ``_sample``; the public methods do validation, batching (bounded memory) and checks.

Data at any finite scale: every estimator squares its data somewhere (covariances,
distances, variances), which overflows beyond about 1e154 and underflows below about
1e-154. The public methods therefore hand the subclass ``X / data_scale_``, where
``data_scale_`` is 1 for data of ordinary magnitude and otherwise the power of two nearest
above the largest ``|x|`` (dividing by it is exact), and add the log-Jacobian
``-d log(data_scale_)`` back to every log-density: figures are always in the units of the
data given to ``fit``, and those of ordinary data are untouched.

What a subclass returns is checked at the boundary: ``_score_samples`` one value per row,
``_sample`` one row of d values per sample; a wrong shape is an error naming the estimator,
the method and both shapes. ``can_sample`` is what the class, or the nearest base that
sets it, declares; a class none of whose bases sets it (a user's model, say) can sample
exactly when it implements ``_sample``. One that cannot gets no sample metrics: the runner
records its likelihoods and notes that it drew no samples.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from densbench.estimators.params import (
    Constraint,
    Interval,
    ParamConstraints,
    When,
    check_value,
)
from densbench.estimators.params import check_params as _check_all
from densbench.registry import UnknownNameError, shared

__all__ = ["DensityEstimator", "LikelihoodKind", "NoLikelihoodError", "NotFittedError",
           "check_array", "check_output", "data_scale", "engine_errors", "scale_of"]

#: Largest magnitudes in [2^-ORDINARY_EXPONENT, 2^ORDINARY_EXPONENT] are left as they are:
#: their squares, summed over millions of terms, stay far inside the float64 range.
ORDINARY_EXPONENT = 100


#: The largest power-of-two exponent of a float64 (2^1023 is finite, 2^1024 is not).
_MAX_EXPONENT = int(np.finfo(np.float64).maxexp) - 1


def data_scale(X: np.ndarray) -> float:
    """1.0 for data whose largest magnitude is ordinary (see :data:`ORDINARY_EXPONENT`),
    else the power of two at or just above it: ``X / data_scale(X)`` then has magnitudes
    in [0.5, 1], exactly (a division by a power of two only changes exponents). Above
    2^1023 (up to the largest float64, 1.8e308) the scale is 2^1023, the largest finite
    power of two, and the magnitudes are in [1, 2).

    Example:
        >>> data_scale(np.array([[3.0, -2.0]])), data_scale(np.array([[3e155]])) > 1e155
        (1.0, True)
        >>> data_scale(np.array([[1.7e308]])) == 2.0 ** 1023
        True
    """
    return scale_of(float(np.max(np.abs(X))) if X.size else 0.0)


def scale_of(magnitude: float) -> float:
    """The power of two by which to divide numbers of this ``magnitude`` (> 0, finite) so
    that they are ordinary: 1.0 for an ordinary magnitude (or 0, inf, NaN), else the power
    of two at or just above it, 2^1023 at most (see :func:`data_scale`)."""
    if not (magnitude > 0.0 and math.isfinite(magnitude)):
        return 1.0
    exponent = int(np.frexp(magnitude)[1])  # magnitude = f 2^exponent with f in [0.5, 1)
    if abs(exponent) <= ORDINARY_EXPONENT:
        return 1.0
    return float(np.ldexp(1.0, min(exponent, _MAX_EXPONENT)))


class LikelihoodKind(enum.StrEnum):
    """What ``score_samples`` means."""

    EXACT = "exact"
    """The log-density itself (KDE, GMM, flows, autoregressive models)."""
    LOWER_BOUND = "lower_bound"
    """A deterministic lower bound such as an ELBO."""
    STOCHASTIC_BOUND = "stochastic_bound"
    """A Monte-Carlo estimate of a lower bound (IWAE with K samples)."""
    NONE = "none"
    """No likelihood (implicit models such as a GAN); ``score_samples`` raises."""


class NoLikelihoodError(NotImplementedError):
    """``score_samples`` of an implicit model (``LikelihoodKind.NONE``): it has no
    likelihood; its samples are scored instead."""


def check_array(X: Any, *, who: str, what: str = "X", dim: int | None = None,
                min_rows: int = 1) -> np.ndarray:
    """Return ``X`` as a float64 (n, d) array or raise ``ValueError`` naming ``who``.

    Example:
        >>> check_array([[0.0, 1.0]], who="kde").shape
        (1, 2)
        >>> check_array([[0.0, float("nan")]], who="kde")
        Traceback (most recent call last):
        ...
        ValueError: kde: X contains 1 non-finite value(s) (NaN or inf), first in row 0
    """
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{who}: {what} must be a numeric array; {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{who}: {what} must be 2-D (n_samples, n_features); got shape "
                         f"{arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{who}: {what} has no features (shape {arr.shape})")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{who}: {what} has {arr.shape[1]} features but the estimator was "
                         f"fitted on {dim}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{who}: {what} has {arr.shape[0]} row(s); at least {min_rows} "
                         f"are needed")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"{who}: {what} contains {int(bad.sum())} non-finite value(s) "
                         f"(NaN or inf), first in row {first}")
    return arr


def check_output(values: Any, expected: tuple[int, ...], *, who: str, method: str,
                 meaning: str) -> np.ndarray:
    """``values``, what ``method`` of estimator ``who`` returned, as a float64 array of
    shape ``expected``; a ``ValueError`` naming both shapes otherwise (``meaning`` says what
    the shape stands for).

    Example:
        >>> check_output(np.zeros((3, 1)), (3,), who="mine.py:M", method="_score_samples",
        ...              meaning="one per row")
        Traceback (most recent call last):
        ...
        ValueError: mine.py:M: _score_samples returned shape (3, 1); expected (3,): one per row
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{who}: {method} must return a numeric array of shape {expected} "
                         f"({meaning}); got {type(values).__name__}: {exc}") from None
    if arr.shape != expected:
        raise ValueError(f"{who}: {method} returned shape {arr.shape}; expected {expected}: "
                         f"{meaning}")
    return arr


class _RegistryName:
    """``cls.name``: the name the registry knows the class by (its class name if none); a
    class from outside the package may set its own ``name``."""

    def __get__(self, obj: Any, cls: type) -> str:
        return shared("estimator").name_of(cls) or cls.__name__


@contextlib.contextmanager
def engine_errors(who: str, engine: str) -> Iterator[None]:
    """Re-raise a ``ValueError`` or ``LinAlgError`` of a fitting engine (scikit-learn,
    hmmlearn) as a ``ValueError`` naming the estimator, so a message never points at a
    function the user did not call."""
    try:
        yield
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise ValueError(f"{who}: {engine} failed on this data: {exc}") from exc


class DensityEstimator(BaseEstimator):
    """Base class of all densbench estimators (see the module docstring)."""

    #: Registry name, read from the registry's declaration.
    name: ClassVar[str] = _RegistryName()  # type: ignore[assignment]
    #: What ``score_samples`` returns.
    likelihood: ClassVar[LikelihoodKind] = LikelihoodKind.EXACT
    #: Whether ``sample`` is available (see the module docstring for a class that does not
    #: set it).
    can_sample: ClassVar[bool] = True
    _can_sample_declared: ClassVar[bool] = False
    #: Whether the estimator models discrete data natively (it then receives the raw levels
    #: and reports a discrete log-probability; otherwise it sees dequantized data).
    discrete_native: ClassVar[bool] = False
    #: Whether the estimator reads each row as an image: the run then passes the dataset's
    #: ``image_shape`` ((H, W) or (H, W, C); rows hold the pixels in that order, channels
    #: last) as a hyperparameter of that name.
    image_model: ClassVar[bool] = False
    #: Whether the estimator models dequantized images in logit space: the run then hands
    #: it y = logit(lambda + (1 - 2 lambda) x) of the dequantized pixels x in [0, 1)^d
    #: (lambda declared by the dataset) and adds that map's log-Jacobian back
    #: (:func:`densbench.data.transforms.prepare`); the class itself just models y.
    logit_space: ClassVar[bool] = False
    #: Whether ``fit`` takes ``binarize_from``, the pixel means of dynamically binarized
    #: training images, drawn afresh at every epoch (the neural estimators' shared loop).
    redraws_binarization: ClassVar[bool] = False
    #: Fewest training rows ``fit`` accepts.
    min_rows: ClassVar[int] = 2
    #: Rough cost of one training epoch against an MLP-based model's at the same dimension
    #: and rows; a run's scheduler multiplies its prior by it to hand out the longest cells
    #: first (:mod:`densbench.runner.schedule`). Only the order of cells depends on it.
    epoch_cost: ClassVar[float] = 1.0
    #: Whether the class takes ``compile=True``, which a run with ``--compile`` gives it:
    #: training through ``torch.compile`` (:mod:`densbench.estimators.compiled`). Only the
    #: time depends on it, and the figures by floating-point order.
    compilable: ClassVar[bool] = False
    #: Rows per scoring batch: memory stays bounded whatever the number of query rows.
    #: None for an estimator that bounds its own memory (one ``_score_samples`` call).
    score_batch_rows: ClassVar[int | None] = 4096
    #: What each hyperparameter may be (see :mod:`densbench.estimators.params`). A class
    #: declares only its own; :meth:`parameter_constraints` merges them along the MRO.
    _parameter_constraints: ClassVar[ParamConstraints] = {
        "random_state": [Interval(int, 0, None, "left"), None],
    }
    #: Rules that tie hyperparameters together, checked after each value passed its own.
    _joint_constraints: ClassVar[tuple[When, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # can_sample as a class or its bases declare it; where none does, whether the
        # class has a sampler (a _sample other than this base's stub)
        if "can_sample" in vars(cls):
            cls._can_sample_declared = True
        elif not cls._can_sample_declared:
            cls.can_sample = cls._sample is not DensityEstimator._sample

    def __init__(self, *, random_state: int | None = None) -> None:
        # The one hyperparameter every estimator takes; a subclass with no others of its
        # own (a user's model, say) needs no ``__init__``.
        self.random_state = random_state

    # -- public API -------------------------------------------------------------------
    def fit(self, X: Any, X_val: Any = None) -> DensityEstimator:
        """Fit to ``X`` (n, d); ``X_val`` is used only for model selection / early stopping."""
        X = check_array(X, who=self.name, min_rows=self.min_rows)
        if X_val is not None:
            X_val = check_array(X_val, who=self.name, what="X_val", dim=X.shape[1])
        type(self).check_params(self.get_params(deep=False))
        self.n_features_in_ = X.shape[1]
        self.data_scale_ = data_scale(X)
        self._fit(self._in_scale(X), None if X_val is None else self._in_scale(X_val))
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Log-density (or its bound, see ``likelihood``) in nats, one value per row."""
        if self.likelihood is LikelihoodKind.NONE:
            raise NoLikelihoodError(f"{self.name}: an implicit model has no likelihood "
                                    f"(score_samples is not defined); score its samples "
                                    f"instead")
        self._check_fitted()
        X = check_array(X, who=self.name, dim=self.n_features_in_)
        out = np.empty(X.shape[0], dtype=np.float64)
        step = self.score_batch_rows or max(X.shape[0], 1)
        for start in range(0, X.shape[0], step):
            batch = X[start:start + step]
            out[start:start + len(batch)] = check_output(
                self._score_samples(self._in_scale(batch)), (len(batch),), who=self.name,
                method="_score_samples", meaning="one log-density per row")
        if np.isnan(out).any():
            raise FloatingPointError(f"{self.name}: score_samples produced NaN")
        return self._to_data_units(out)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean of :meth:`score_samples` (nats per example)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n: int, random_state: int | np.random.Generator | None = 0) -> np.ndarray:
        """Draw ``n`` samples (n, d); the same ``random_state`` gives the same samples."""
        if not self.can_sample:
            why = (" (its class implements no _sample)"
                   if type(self)._sample is DensityEstimator._sample else "")
            raise NotImplementedError(f"{self.name}: this estimator cannot sample{why}")
        self._check_fitted()
        check_value(self.name, "n", n, [Interval(int, 0, None)])
        rng = np.random.default_rng(random_state)
        out = check_output(self._sample(int(n), rng), (int(n), self.n_features_in_),
                           who=self.name, method="_sample",
                           meaning="n samples of d values each")
        if self.data_scale_ == 1.0:
            return out
        with np.errstate(over="ignore"):
            scaled = out * self.data_scale_
        over = int(np.count_nonzero(np.isinf(scaled) & np.isfinite(out)))
        if over:
            raise FloatingPointError(f"{self.name}: {over} sampled value(s) exceed the largest "
                                     f"float64 in the data's units (data of magnitude up to "
                                     f"{self.data_scale_:.3g})")
        return scaled

    def diagnostics(self, X: Any) -> dict[str, tuple[np.ndarray, str]]:
        """Extra per-example figures on ``X`` for the record: name -> (values (n,), unit).

        A unit of ``"loglik"`` marks a log-likelihood-like figure (an ELBO, an IWAE
        estimate at some K), in the units of the data like ``score_samples`` (the runner
        maps it to the original data's units as it does ``score_samples``); any other unit
        is reported as it is. Default: none (subclasses implement ``_diagnostics``).
        """
        self._check_fitted()
        X = check_array(X, who=self.name, dim=self.n_features_in_)
        return {key: (self._to_data_units(values) if unit == "loglik" else values, unit)
                for key, (values, unit) in self._diagnostics(self._in_scale(X)).items()}

    def n_parameters(self) -> int:
        """Number of learned scalar parameters (for cost reports)."""
        self._check_fitted()
        return int(self._n_parameters())

    @classmethod
    def run_params(cls, dataset: Any, *, seed: int, device: str) -> dict[str, Any]:
        """The hyperparameters this estimator takes from a run rather than from its user:
        the cell's seed, and what the dataset says about itself. An estimator that models
        discrete data natively is told the number of levels (it scores the raw levels);
        subclasses add what they read elsewhere (the device, a sequence shape). Values a
        suite gives explicitly take precedence."""
        out: dict[str, Any] = {"random_state": seed}
        if cls.discrete_native and dataset.kind == "discrete":
            out["levels"] = dataset.levels
        if cls.image_model and getattr(dataset, "image_shape", None) is not None:
            out["image_shape"] = tuple(dataset.image_shape)
        return out

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        """Tiny, fast hyperparameters for the conformance suite."""
        return {}

    @classmethod
    def parameter_constraints(cls) -> dict[str, list[Constraint | None]]:
        """Every hyperparameter's constraints, the class's own over its bases'."""
        merged: dict[str, list[Constraint | None]] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("_parameter_constraints", {}))
        return merged

    @classmethod
    def check_param_names(cls, params: Mapping[str, Any]) -> None:
        """Raise :class:`~densbench.registry.UnknownNameError` for a name that is not a
        hyperparameter of this class (the message lists the known ones)."""
        known = set(cls._get_param_names())
        unknown = sorted(set(params) - known)
        if unknown:
            raise UnknownNameError(
                f"{cls.name}: unknown parameter(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known)) or '(none)'}")

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """Raise the uniform ``ValueError('<name>: <param> must be ...; got ...')`` for the
        first bad value in ``params`` (the others take their defaults), without fitting:
        ``fit`` runs exactly this, and a suite is validated with it before anything runs."""
        cls.check_param_names(params)
        full = {**cls().get_params(deep=False), **params}
        _check_all(cls.name, full, cls.parameter_constraints(), cls._joint_constraints)

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    # -- for subclasses ---------------------------------------------------------------
    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        raise NotImplementedError(f"{self.name}: the class defines no _fit")

    def _diagnostics(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        return {}

    def _in_scale(self, X: np.ndarray) -> np.ndarray:
        """``X`` in the units the subclass works in (see the module docstring)."""
        return X if self.data_scale_ == 1.0 else X / self.data_scale_

    def _to_data_units(self, loglik: np.ndarray) -> np.ndarray:
        """Log-densities of ``X / data_scale_`` as log-densities of ``X``."""
        if self.data_scale_ == 1.0:
            return loglik
        return loglik - self.n_features_in_ * math.log(self.data_scale_)

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name}: the class defines no _score_samples")

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError(f"{self.name}: sampling is not implemented (the class "
                                  "defines no _sample)")

    def _n_parameters(self) -> int:
        raise NotImplementedError(f"{self.name}: the class defines no _n_parameters")

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"{self.name}: call fit before using this estimator")

    def _seed(self) -> int:
        """The ``random_state`` hyperparameter as an int seed (0 when unset)."""
        rs = getattr(self, "random_state", None)
        return 0 if rs is None else int(rs)
