"""Linear-Gaussian latent-variable models: probabilistic PCA and factor analysis.

Both model ``x = mean + W^T z + eps`` with ``z ~ N(0, I_q)`` and Gaussian noise ``eps``
(isotropic for PPCA, diagonal for factor analysis), so ``x`` is Gaussian with covariance
``W^T W + noise``. Both are scored exactly by densbench's own float64 code
(:func:`densbench.estimators.gaussian.gaussian_logpdf` on the implied d x d covariance;
the dimensions here are at most a few hundred, so a dense Cholesky factor is cheap).

The number of latent dimensions ``n_components`` is an int (clipped to ``d - 1``) or
``"auto"``: with validation data, the candidate in {1, 2, 4, 8, ...} plus ``d - 1`` with
the best mean validation log-likelihood; without, ``ceil(d / 4)`` (clipped to
``[1, d - 1]``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from densbench.estimators.base import DensityEstimator, engine_errors
from densbench.estimators.gaussian import covariance_cholesky, gaussian_logpdf
from densbench.estimators.params import Interval, Options, ParamConstraints

__all__ = ["PPCA", "FactorAnalysis"]

#: PPCA's noise variance is at least this fraction of the mean per-dimension variance, so
#: data lying exactly on a q-dimensional subspace still give a proper density. It never
#: binds on data with a full-rank covariance (the noise is then the ML estimate exactly).
_NOISE_FLOOR = 1e-6


def _candidates(d: int) -> list[int]:
    """Latent dimensions tried by ``n_components="auto"``: powers of two below d, and d-1."""
    out = {d - 1}
    q = 1
    while q < d - 1:
        out.add(q)
        q *= 2
    return sorted(out)


def _default_components(d: int) -> int:
    """The fixed fraction used by ``"auto"`` without validation data: ceil(d / 4)."""
    return max(1, min(d - 1, math.ceil(d / 4)))


class _LinearGaussian(DensityEstimator):
    """Shared state, scoring and sampling of x = mean + W^T z + noise."""

    # learned state: mean_ (d,), components_ (q, d) = W^T as in scikit-learn,
    # noise_variance_ (float or (d,)), covariance_ (d, d), cholesky_ (d, d)

    _parameter_constraints: ClassVar[ParamConstraints] = {
        "n_components": [Interval(int, 1, None), Options("auto")]}

    def _set_covariance(self) -> None:
        W = self.components_
        noise = np.broadcast_to(np.asarray(self.noise_variance_, dtype=np.float64),
                                (self.n_features_in_,))
        self.covariance_ = W.T @ W + np.diag(noise)
        self.cholesky_ = covariance_cholesky(self.covariance_, who=self.name)

    def _select(self, fit_q: Callable[[int], tuple[np.ndarray, Any]],
                X_val: np.ndarray | None, d: int) -> None:
        """Set the state from ``fit_q(q) -> (components, noise_variance)`` for the chosen q
        (by mean validation log-likelihood when ``n_components == "auto"`` and ``X_val``
        is given; the first of equal scores wins)."""
        select = self.n_components == "auto" and X_val is not None
        if self.n_components != "auto":
            qs = [max(1, min(int(self.n_components), d - 1))]
        else:
            qs = _candidates(d) if X_val is not None else [_default_components(d)]
        self.selection_: list[tuple[int, float]] = []
        best: tuple[float, int, tuple[Any, ...]] | None = None
        for q in qs:
            self.components_, self.noise_variance_ = fit_q(q)
            self._set_covariance()
            score = float(np.mean(self._score_samples(X_val))) if select else 0.0
            if select:
                self.selection_.append((q, score))
            if best is None or score > best[0]:
                best = (score, q, (self.components_, self.noise_variance_,
                                   self.covariance_, self.cholesky_))
        assert best is not None
        self.n_components_ = best[1]
        (self.components_, self.noise_variance_, self.covariance_,
         self.cholesky_) = best[2]

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        return gaussian_logpdf(X, self.mean_, self.cholesky_)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        q, d = self.components_.shape
        z = rng.standard_normal((n, q))
        eps = rng.standard_normal((n, d))
        return self.mean_ + z @ self.components_ + np.sqrt(self.noise_variance_) * eps

    def _n_parameters(self) -> int:
        q, d = self.components_.shape
        return d + q * d + int(np.size(self.noise_variance_))


class PPCA(_LinearGaussian):
    """Probabilistic PCA: a q-dimensional linear-Gaussian model with isotropic noise.

    The closed-form maximum-likelihood solution of Tipping & Bishop: with the eigenvalues
    ``lambda_1 >= ... >= lambda_d`` and eigenvectors U of the maximum-likelihood covariance
    S (divide by n), the noise variance is the mean of the discarded eigenvalues,
    ``sigma^2 = mean(lambda_{q+1..d})``, and ``W = U_q (Lambda_q - sigma^2 I)^{1/2}``, so
    the model covariance is ``W W^T + sigma^2 I``. ``sigma^2`` is floored at 1e-6 times
    the mean variance (this binds only on data lying exactly on a subspace).

    Parameters:
        n_components: latent dimension q, an int >= 1 (clipped to d - 1), or ``"auto"``:
            with ``X_val``, the candidate in {1, 2, 4, ...} and d - 1 with the best mean
            validation log-likelihood; without, ``ceil(d / 4)``.
        random_state: unused (the fit is deterministic); kept for a uniform interface.

    Attributes:
        mean_, components_ ((q, d): W transposed, as in scikit-learn), noise_variance_
        (float sigma^2), covariance_, cholesky_, n_components_ (the q used), selection_
        (list of (q, mean validation log-likelihood); empty unless selected).

    References:
        M. E. Tipping and C. M. Bishop, "Probabilistic principal component analysis",
        Journal of the Royal Statistical Society B 61(3), 611-622, 1999.

    Example:
        >>> import numpy as np, densbench as db
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(400, 1)) @ [[3.0, 2.0, 1.0]] + 0.1 * rng.normal(size=(400, 3))
        >>> est = db.estimators.make("ppca", n_components=1).fit(X)
        >>> round(est.noise_variance_, 2), est.components_.shape
        (0.01, (1, 3))
    """

    def __init__(self, *, n_components: int | str = "auto", random_state: int = 0) -> None:
        self.n_components = n_components
        self.random_state = random_state

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"n_components": 1}

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        n, d = X.shape
        if d < 2:
            raise ValueError(f"{self.name}: needs at least 2 features (latent dimension "
                             f"1 <= q < d); got {d}")
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        S = (Xc.T @ Xc) / n
        lam, U = np.linalg.eigh(0.5 * (S + S.T))
        lam, U = np.maximum(lam[::-1], 0.0), U[:, ::-1]
        floor = _NOISE_FLOOR * float(np.mean(lam))
        if not floor > 0.0:
            raise ValueError(f"{self.name}: the training data have zero variance in every "
                             f"dimension")

        def fit_q(q: int) -> tuple[np.ndarray, float]:
            sigma2 = max(float(np.mean(lam[q:])), floor)
            W = U[:, :q] * np.sqrt(np.maximum(lam[:q] - sigma2, 0.0))
            return np.ascontiguousarray(W.T), sigma2

        self._select(fit_q, X_val, d)


class FactorAnalysis(_LinearGaussian):
    """Factor analysis: a q-dimensional linear-Gaussian model with diagonal noise.

    The model covariance is ``W^T W + diag(psi)``. The fitting engine is scikit-learn's
    ``FactorAnalysis`` (its SVD-based EM is the standard, well-tested implementation); its
    ``mean_``, ``components_`` (W, shape (q, d)) and ``noise_variance_`` (psi) are copied
    and the log-density is computed by densbench's own float64 code from that covariance.

    Parameters:
        n_components: latent dimension q, an int >= 1 (clipped to d - 1 for d >= 2), or
            ``"auto"``: with ``X_val``, the candidate in {1, 2, 4, ...} and d - 1 with the
            best mean validation log-likelihood; without, ``ceil(d / 4)``.
        max_iter: maximum EM iterations (scikit-learn's ``max_iter``).
        tol: stop when an EM iteration raises the training log-likelihood by less than this,
            in nats PER EXAMPLE (scikit-learn's ``tol`` is on the total, so it receives
            ``tol * n``), so that one tolerance suits any number of rows.
        random_state: seed of scikit-learn's randomized SVD.

    Attributes:
        mean_, components_ ((q, d)), noise_variance_ ((d,) psi), covariance_, cholesky_,
        n_components_, selection_ (as for PPCA), converged_ (False if EM hit max_iter).

    References:
        D. Barber, *Bayesian Reasoning and Machine Learning*, Cambridge University Press
        2012, sec. 21.2 (the SVD-based EM algorithm scikit-learn implements); D. B. Rubin
        and D. T. Thayer, "EM algorithms for ML factor analysis", Psychometrika 47, 1982.

    Example:
        >>> import numpy as np, densbench as db
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(400, 1)) @ [[3.0, 2.0, 1.0]] + rng.normal(size=(400, 3))
        >>> est = db.estimators.make("factor_analysis", n_components=1).fit(X)
        >>> est.components_.shape, est.noise_variance_.shape
        ((1, 3), (3,))
    """

    _parameter_constraints: ClassVar[ParamConstraints] = {
        "max_iter": [Interval(int, 1, None)], "tol": [Interval(float, 0, None, "neither")]}

    def __init__(self, *, n_components: int | str = "auto", max_iter: int = 1000,
                 tol: float = 1e-4, random_state: int = 0) -> None:
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"n_components": 1, "max_iter": 200}

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        from sklearn.decomposition import FactorAnalysis as SkFactorAnalysis
        from sklearn.exceptions import ConvergenceWarning

        d = X.shape[1]
        converged: dict[int, bool] = {}

        def fit_q(q: int) -> tuple[np.ndarray, np.ndarray]:
            # scikit-learn is the fitting engine only (its SVD-based EM); the density is
            # computed by densbench from the copied parameters. The exact LAPACK SVD is
            # used: at a few hundred dimensions at most it is both exact and much faster
            # than the randomized default, which is meant for very wide data.
            sk = SkFactorAnalysis(n_components=q, max_iter=int(self.max_iter),
                                  tol=float(self.tol) * X.shape[0], svd_method="lapack",
                                  random_state=self._seed())
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                with engine_errors(self.name, "scikit-learn's EM"):
                    sk.fit(X)
            converged[q] = not any(issubclass(w.category, ConvergenceWarning)
                                   for w in caught)
            self.mean_ = np.asarray(sk.mean_, dtype=np.float64)
            return (np.asarray(sk.components_, dtype=np.float64),
                    np.asarray(sk.noise_variance_, dtype=np.float64))

        # max(d, 2): one feature still gets one factor
        self._select(fit_q, X_val, max(d, 2))
        self.converged_ = converged[self.n_components_]
