"""The estimator contract every densbench estimator follows.

Close to scikit-learn's density estimators: keyword-only ``__init__`` that only stores
hyperparameters, validation in :meth:`DensityEstimator.fit`, learned state ending in ``_``,
``score_samples`` one log-density per row, and, unlike scikit-learn, ``score`` always the
mean and ``sample`` always seeded.

Subclasses implement ``_fit``, ``_score_samples`` (one batch, float64 ndarray in and out)
and ``_sample``; the public methods do validation, batching (bounded memory) and checks.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

__all__ = ["DensityEstimator", "LikelihoodKind", "NoLikelihoodError", "NotFittedError",
           "check_array", "is_int"]


def is_int(v: Any, low: int = 1) -> bool:
    """True for an integer (Python or NumPy, not bool) of at least ``low``: the check behind
    every integer hyperparameter's validation."""
    return isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= low


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


class DensityEstimator(BaseEstimator):
    """Base class of all densbench estimators (see the module docstring)."""

    #: Registry name, set by the registry decorator.
    name: ClassVar[str] = "?"
    #: What ``score_samples`` returns.
    likelihood: ClassVar[LikelihoodKind] = LikelihoodKind.EXACT
    #: Whether ``sample`` is available.
    can_sample: ClassVar[bool] = True
    #: Whether the estimator models discrete data natively (it then receives the raw levels
    #: and reports a discrete log-probability; otherwise it sees dequantized data).
    discrete_native: ClassVar[bool] = False
    #: Fewest training rows ``fit`` accepts.
    min_rows: ClassVar[int] = 2
    #: Rows per scoring batch: memory stays bounded whatever the number of query rows.
    score_batch_rows: ClassVar[int] = 4096

    # -- public API -------------------------------------------------------------------
    def fit(self, X: Any, X_val: Any = None) -> DensityEstimator:
        """Fit to ``X`` (n, d); ``X_val`` is used only for model selection / early stopping."""
        X = check_array(X, who=self.name, min_rows=self.min_rows)
        if X_val is not None:
            X_val = check_array(X_val, who=self.name, what="X_val", dim=X.shape[1])
        self._validate_params()
        self.n_features_in_ = X.shape[1]
        self._fit(X, X_val)
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
        step = self.score_batch_rows
        for start in range(0, X.shape[0], step):
            out[start:start + step] = self._score_samples(X[start:start + step])
        if np.isnan(out).any():
            raise FloatingPointError(f"{self.name}: score_samples produced NaN")
        return out

    def score(self, X: Any, y: Any = None) -> float:
        """Mean of :meth:`score_samples` (nats per example)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n: int, random_state: int | np.random.Generator | None = 0) -> np.ndarray:
        """Draw ``n`` samples (n, d); the same ``random_state`` gives the same samples."""
        if not self.can_sample:
            raise NotImplementedError(f"{self.name}: this estimator cannot sample")
        self._check_fitted()
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"{self.name}: n must be a non-negative int; got {n!r}")
        rng = np.random.default_rng(random_state)
        out = np.asarray(self._sample(int(n), rng), dtype=np.float64)
        return out.reshape(int(n), self.n_features_in_)

    def diagnostics(self, X: Any) -> dict[str, tuple[np.ndarray, str]]:
        """Extra per-example figures on ``X`` for the record: name -> (values (n,), unit).

        A unit of ``"loglik"`` marks a log-likelihood-like figure (an ELBO, an IWAE
        estimate at some K) that the runner maps to the original data's units like
        ``score_samples``; any other unit is reported as it is. Default: none.
        """
        return {}

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
        return out

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        """Tiny, fast hyperparameters for the conformance suite."""
        return {}

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    # -- for subclasses ---------------------------------------------------------------
    def _validate_params(self) -> None:
        """Raise ``ValueError('<name>: <param> must be ...; got ...')`` on a bad value."""

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        raise NotImplementedError

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _n_parameters(self) -> int:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"{self.name}: call fit before using this estimator")

    def _bad_param(self, param: str, expected: str, got: Any) -> ValueError:
        return ValueError(f"{self.name}: {param} must be {expected}; got {got!r}")

    def _seed(self) -> int:
        """The ``random_state`` hyperparameter as an int seed (0 when unset)."""
        rs = getattr(self, "random_state", None)
        return 0 if rs is None else int(rs)
