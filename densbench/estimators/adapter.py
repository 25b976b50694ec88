"""Any scikit-learn-style density estimator as a densbench estimator.

A class with ``fit(X)`` and ``score_samples(X)`` (optionally ``sample``), such as
``sklearn.neighbors:KernelDensity`` or ``sklearn.mixture:GaussianMixture``, or a user's own,
runs by spec through :func:`adapt`, which derives a :class:`SklearnAdapter` subclass for it:
its hyperparameters are the wrapped class's ``__init__`` parameters (plus ``random_state``
and ``likelihood`` where it has none), its figures are the wrapped estimator's own
``score_samples``, and what it can do is read from the class, so the runner computes only
the metrics that apply.

What ``score_samples`` means cannot be read from code: the adapter takes it as exact unless
the class says otherwise in a ``likelihood`` class attribute (``"lower_bound"``, ...) or a
suite sets the ``likelihood`` hyperparameter.

Sampling is always seeded: scikit-learn's samplers differ (``KernelDensity.sample(n,
random_state)`` returns an array; ``GaussianMixture.sample(n)`` reads the estimator's own
``random_state`` and returns ``(X, labels)``), so the adapter passes a seed drawn from the
caller's generator in whichever way the class takes one and keeps only the array.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np

from densbench.estimators.base import (
    DensityEstimator,
    LikelihoodKind,
    check_output,
    engine_errors,
)
from densbench.estimators.params import ParamConstraints, Satisfies
from densbench.registry import PluginError

__all__ = ["SklearnAdapter", "adapt"]

_KINDS = tuple(k.value for k in LikelihoodKind)


class _Likelihood:
    """``likelihood``: on the class, the kind the wrapped class declares; on an instance,
    the ``likelihood`` hyperparameter where a suite set it, else the class's."""

    def __get__(self, obj: Any, cls: type) -> LikelihoodKind:
        value = None if obj is None else obj.__dict__.get("_likelihood")
        try:
            return LikelihoodKind(value if value is not None else cls.default_likelihood)
        except ValueError:  # a bad value as given: check_params refuses it by name
            return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__["_likelihood"] = value


class SklearnAdapter(DensityEstimator):
    """Base of the classes :func:`adapt` derives: one per wrapped class."""

    #: The wrapped scikit-learn-style class.
    wrapped: ClassVar[type]
    #: What the wrapped ``score_samples`` means unless a suite says otherwise.
    default_likelihood: ClassVar[LikelihoodKind] = LikelihoodKind.EXACT
    likelihood = _Likelihood()  # type: ignore[assignment]
    _parameter_constraints: ClassVar[ParamConstraints] = {
        "likelihood": [Satisfies(lambda v: isinstance(v, str) and v in _KINDS,
                                 "one of " + ", ".join(map(repr, _KINDS))), None],
    }

    def __init__(self, **params: Any) -> None:
        # Only stores: the defaults of the wrapped class, then the given values (unknown
        # names are refused by ``check_param_names`` before construction).
        for key, value in {**self._defaults(), **params}.items():
            setattr(self, key, value)

    @classmethod
    def _wrapped_params(cls) -> dict[str, inspect.Parameter]:
        sig = inspect.signature(cls.wrapped.__init__)
        return {k: p for k, p in sig.parameters.items() if k != "self"
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    @classmethod
    def _defaults(cls) -> dict[str, Any]:
        out = {k: (None if p.default is p.empty else p.default)
               for k, p in cls._wrapped_params().items()}
        out.setdefault("random_state", None)
        out.setdefault("likelihood", None)
        return out

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return sorted(cls._defaults())

    @classmethod
    def parameter_constraints(cls) -> dict[str, list[Any]]:
        """densbench's own (``random_state``, ``likelihood``) and, translated, the wrapped
        class's scikit-learn constraints (``_parameter_constraints``), so a bad value is
        refused with densbench's uniform message before anything runs."""
        merged = dict(super().parameter_constraints())
        declared = getattr(cls.wrapped, "_parameter_constraints", None) or {}
        try:
            from sklearn.utils._param_validation import make_constraint
        except ImportError:  # a scikit-learn without it: the wrapped fit validates
            return merged
        for key, options in declared.items():
            if key in cls._wrapped_params() and isinstance(options, list):
                merged[key] = [_sklearn_constraint(make_constraint(o)) for o in options]
        return merged

    def _model(self, params: dict[str, Any]) -> Any:
        own = self._wrapped_params()
        return self.wrapped(**{k: v for k, v in params.items() if k in own})

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        self.model_ = self._model(self.get_params(deep=False))
        with engine_errors(self.name, self.wrapped.__name__):
            self.model_.fit(X)

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        return check_output(self.model_.score_samples(X), (X.shape[0],), who=self.name,
                            method=f"{self.wrapped.__name__}.score_samples",
                            meaning="one log-density per row")

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if n == 0:  # some samplers refuse zero rows
            return np.empty((0, self.n_features_in_))
        try:
            return self._seeded_sample(n, int(rng.integers(2**31 - 1)))
        except NotImplementedError as exc:  # scikit-learn's often carry no message
            raise NotImplementedError(f"{self.name}: {self.wrapped.__name__}.sample is not "
                                      f"implemented for these settings"
                                      + (f" ({exc})" if str(exc) else "")) from exc

    def _seeded_sample(self, n: int, seed: int) -> np.ndarray:
        sample = self.model_.sample
        if "random_state" in inspect.signature(sample).parameters:
            out = sample(n, random_state=seed)
        elif "random_state" in self._wrapped_params():  # read at call time (GaussianMixture)
            kept = self.model_.random_state
            self.model_.random_state = seed
            try:
                out = sample(n)
            finally:
                self.model_.random_state = kept
        else:
            raise ValueError(f"{self.name}: {self.wrapped.__name__}.sample takes no "
                             "random_state, so its samples cannot be seeded")
        return np.asarray(out[0] if isinstance(out, tuple) else out, dtype=np.float64)

    def _n_parameters(self) -> int:
        count = getattr(self.model_, "_n_parameters", None)
        if callable(count):
            return int(count())
        # otherwise: the learned numeric state (arrays and numbers ending in "_")
        return int(sum(np.size(v) for k, v in vars(self.model_).items()
                       if k.endswith("_") and isinstance(v, np.ndarray | float | int)))


def _sklearn_constraint(constraint: Any) -> Satisfies:
    return Satisfies(constraint.is_satisfied_by, str(constraint))


def adapt(name: str, cls: type) -> type[SklearnAdapter]:
    """A :class:`SklearnAdapter` subclass wrapping ``cls`` (a class with ``fit`` and
    ``score_samples``; :class:`~densbench.registry.PluginError` otherwise).

    Example:
        >>> from sklearn.neighbors import KernelDensity
        >>> KD = adapt("sklearn.neighbors:KernelDensity", KernelDensity)
        >>> KD.likelihood.value, KD.can_sample, "bandwidth" in KD().get_params()
        ('exact', True, True)
    """
    missing = [m for m in ("fit", "score_samples") if not callable(getattr(cls, m, None))]
    if not isinstance(cls, type) or missing:
        raise PluginError(f"estimator {name!r}: {cls!r} is not an estimator: a "
                          f"densbench.estimators.DensityEstimator subclass, or a "
                          f"scikit-learn-style class with fit(X) and score_samples(X), is "
                          f"required" + (f" (no {', '.join(missing)})" if missing else ""))
    declared = getattr(cls, "likelihood", LikelihoodKind.EXACT)
    try:
        kind = LikelihoodKind(declared)
    except ValueError:
        raise PluginError(f"estimator {name!r}: class attribute likelihood must be one of "
                          f"{', '.join(_KINDS)}; got {declared!r}") from None
    doc = (inspect.getdoc(cls) or cls.__name__).strip().splitlines()[0]
    return type(cls.__name__, (SklearnAdapter,), {
        "__module__": __name__, "__qualname__": f"adapt.<{cls.__qualname__}>",
        "__doc__": f"{doc} (scikit-learn-style, through densbench's adapter)",
        "wrapped": cls, "default_likelihood": kind,
        "can_sample": callable(getattr(cls, "sample", None)),
        "discrete_native": False,
    })
