"""A single Gaussian: full covariance and diagonal (independent dimensions).

The maximum-likelihood fit is closed form. Both estimators add a small *relative* ridge to
the covariance, so that data lying on a subspace (or a constant column) still give a proper
density; ``ridge=0`` gives the plain maximum-likelihood estimate.

:func:`gaussian_logpdf` is the float64 multivariate normal log-density shared by the
linear-Gaussian models (:mod:`densbench.estimators.linear`) and the mixtures
(:mod:`densbench.estimators.gmm`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from scipy.linalg import solve_triangular

from densbench.estimators.base import DensityEstimator
from densbench.estimators.params import Interval, ParamConstraints

__all__ = ["DiagGaussian", "Gaussian", "covariance_cholesky", "gaussian_logpdf"]

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_logpdf(X: np.ndarray, mean: np.ndarray, cov_cholesky: np.ndarray) -> np.ndarray:
    """Log-density of N(mean, L L^T) at each row of ``X``, float64, shape (n,).

    ``cov_cholesky`` is the lower Cholesky factor L of the covariance; the Mahalanobis term
    is ``||L^{-1} (x - mean)||^2`` by a triangular solve (no inverse is formed).

    Example:
        >>> import numpy as np
        >>> float(gaussian_logpdf(np.zeros((1, 2)), np.zeros(2), np.eye(2))[0])
        -1.8378770664093453
    """
    X = np.asarray(X, dtype=np.float64)
    L = np.asarray(cov_cholesky, dtype=np.float64)
    d = X.shape[1]
    z = solve_triangular(L, (X - mean).T, lower=True, check_finite=False)
    maha = np.einsum("ij,ij->j", z, z)
    logdet = 2.0 * float(np.sum(np.log(np.diag(L))))
    return -0.5 * (d * _LOG_2PI + logdet + maha)


def covariance_cholesky(cov: np.ndarray, *, who: str) -> np.ndarray:
    """Lower Cholesky factor of ``cov``; a ``ValueError`` naming ``who`` if it is not
    positive definite.

    Example:
        >>> covariance_cholesky(np.diag([4.0, 9.0]), who="gaussian")
        array([[2., 0.],
               [0., 3.]])
    """
    try:
        return np.linalg.cholesky(np.asarray(cov, dtype=np.float64))
    except np.linalg.LinAlgError:
        raise ValueError(f"{who}: the fitted covariance is not positive definite (the "
                         f"training data may be degenerate); increase the regularization"
                         ) from None


def _ridge_scale(variances: np.ndarray, who: str) -> float:
    """Mean per-dimension variance, the unit of the relative ridge."""
    scale = float(np.mean(variances))
    if not scale > 0.0:
        raise ValueError(f"{who}: the training data have zero variance in every dimension; "
                         f"a Gaussian density is undefined")
    return scale


class _RidgeGaussian(DensityEstimator):
    """What both Gaussians share: the relative ridge (their one hyperparameter)."""

    _parameter_constraints: ClassVar[ParamConstraints] = {
        "ridge": [Interval(float, 0, None, "left")]}

    def __init__(self, *, ridge: float = 1e-6, random_state: int = 0) -> None:
        self.ridge = ridge
        self.random_state = random_state

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"ridge": 1e-6}


class Gaussian(_RidgeGaussian):
    """Multivariate Gaussian with full covariance (maximum likelihood plus a small ridge).

    The mean is the sample mean and the covariance the maximum-likelihood estimate S (divide
    by n) plus a relative ridge, ``S + ridge * (trace(S) / d) * I``; the default
    ``ridge=1e-6`` changes a well-conditioned fit negligibly and keeps a degenerate one
    positive definite. Samples are ``mean + L z`` with ``z ~ N(0, I)`` and L the Cholesky
    factor of the covariance.

    Parameters:
        ridge: relative ridge added to the covariance (>= 0).
        random_state: unused (the fit is deterministic); kept for a uniform interface.

    Attributes:
        mean_: (d,) mean.
        covariance_: (d, d) covariance, ridge included.
        cholesky_: (d, d) its lower Cholesky factor.

    References:
        C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer 2006, sec. 2.3.4
        (maximum likelihood for the Gaussian).

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.array([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])
        >>> est = db.estimators.make("gaussian").fit(X)      # mean 0, covariance I
        >>> est.score_samples(np.zeros((1, 2))).round(6)     # -log(2 pi)
        array([-1.837878])
        >>> est.sample(3).shape
        (3, 2)
    """

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        n, d = X.shape
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        S = (Xc.T @ Xc) / n
        S = 0.5 * (S + S.T)
        scale = _ridge_scale(np.diag(S), self.name)
        self.covariance_ = S + float(self.ridge) * scale * np.eye(d)
        self.cholesky_ = covariance_cholesky(self.covariance_, who=self.name)

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        return gaussian_logpdf(X, self.mean_, self.cholesky_)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, self.n_features_in_))
        return self.mean_ + z @ self.cholesky_.T

    def _n_parameters(self) -> int:
        d = self.n_features_in_
        return d + d * (d + 1) // 2


class DiagGaussian(_RidgeGaussian):
    """Gaussian with diagonal covariance: independent dimensions (the naive-Bayes assumption).

    Each dimension gets its sample mean and maximum-likelihood variance (divide by n) plus
    the same relative ridge as :class:`Gaussian`: ``var_j + ridge * mean(var)``. The
    log-density is the sum of the one-dimensional normal log-densities.

    Parameters:
        ridge: relative ridge added to every variance (>= 0).
        random_state: unused (the fit is deterministic); kept for a uniform interface.

    Attributes:
        mean_: (d,) mean.
        var_: (d,) variances, ridge included.

    References:
        C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer 2006, sec. 2.3.4
        and 8.2.2 (naive Bayes: independence of the dimensions).

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).normal(size=(5000, 2)) * [1.0, 3.0]
        >>> est = db.estimators.make("diag_gaussian").fit(X)
        >>> np.sqrt(est.var_).round(1)
        array([1., 3.])
    """

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        self.mean_ = X.mean(axis=0)
        var = np.mean((X - self.mean_) ** 2, axis=0)
        self.var_ = var + float(self.ridge) * _ridge_scale(var, self.name)
        if not np.all(self.var_ > 0.0):
            raise ValueError(f"{self.name}: a dimension has zero variance; set ridge > 0")

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        z2 = (X - self.mean_) ** 2 / self.var_
        return -0.5 * (np.sum(z2, axis=1) + np.sum(np.log(self.var_))
                       + self.n_features_in_ * _LOG_2PI)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, self.n_features_in_))
        return self.mean_ + z * np.sqrt(self.var_)

    def _n_parameters(self) -> int:
        return 2 * self.n_features_in_
