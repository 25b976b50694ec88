"""Gaussian mixture models (full or diagonal covariances) with a selected number of
components.

The fitting engine is scikit-learn's ``GaussianMixture`` (its EM is the standard,
well-tested implementation); the learned weights, means and covariances are copied, and the
log-density and the samples are computed by densbench's own float64 code from them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits

from densbench.estimators.base import DensityEstimator, engine_errors
from densbench.estimators.gaussian import covariance_cholesky, gaussian_logpdf
from densbench.estimators.params import Interval, Options, ParamConstraints, is_int
from densbench.estimators.selection import SIZES, select_size, start_seeds

__all__ = ["GMM"]

_LOG_2PI = math.log(2.0 * math.pi)


#: A start replaces the one kept so far only when its mean log-likelihood is higher by more
#: than this many standard errors of the paired per-row differences.
START_Z = 2.0


def _clearly_better(rows: np.ndarray, kept: np.ndarray) -> bool:
    """Whether per-row log-likelihoods ``rows`` beat ``kept`` on the same rows by more
    than :data:`START_Z` paired standard errors."""
    diff = rows - kept
    se = float(np.std(diff, ddof=1)) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
    return float(np.mean(diff)) > START_Z * se


class GMM(DensityEstimator):
    """Gaussian mixture (full or diagonal covariances), EM fit, components selected.

    ``n_components`` is an int or a list of ints. For a list, candidates are fitted in
    increasing order and scored by the mean validation log-likelihood when ``X_val`` is
    given, else by BIC on the training data (``-2 log L + p log n``, lower is better); the
    search stops after ``selection_patience`` consecutive candidates without improvement.
    Candidates with more components than training rows are not tried.

    EM is scikit-learn's ``GaussianMixture`` with the given ``covariance_type``,
    ``reg_covar`` (added to the covariance diagonals), ``tol``, ``max_iter`` and
    ``init_params``, started ``n_init`` times (seeds ``random_state``, ``random_state + 1``,
    ...; the first start is scikit-learn's default fit with that ``random_state``). Without
    ``X_val`` the start kept is the one with the highest training log-likelihood (what
    scikit-learn's own ``n_init`` keeps). With ``X_val`` validation decides, because a
    mixture with full covariances in many dimensions overfits: on dequantized digits the
    start with the best training likelihood can be many standard errors worse on held-out
    rows than the first start, where the start best on validation stays within noise of the
    best. There the ``incumbent`` start comes first (by default one k-means++ draw with
    ``random_state``) and a later start replaces the one kept only when its mean validation
    log-likelihood is higher by more than :data:`START_Z` (2) standard errors of the paired
    per-row differences:
    selection noise on a thousand validation rows does not move the fit. Each kind of start
    wins somewhere: one k-means++ draw can end nats worse than scikit-learn's default fit
    on some seeds of ``gmm10``/``gmm50`` (and is then replaced by a clear margin), while
    k-means-initialized EM can end slightly worse on held-out rows of ``checkerboard`` and
    ``eight_gaussians``. Cost: ``n_init`` EM runs per candidate size, one more with
    ``X_val`` and an ``incumbent``.

    Scoring is densbench's own: per component the
    Gaussian log-density from the Cholesky factor of its covariance, combined with the log
    weights by logsumexp, in float64 batches. Sampling draws a component from the weights,
    then ``mean + L z``.

    Parameters:
        n_components: an int >= 1 or a list of ints >= 1 (default: 1, 2, 4, 8, 16, 32).
        covariance_type: ``'full'`` or ``'diag'``.
        reg_covar: non-negative regularization added to the covariance diagonals.
        tol: EM convergence threshold on the per-sample lower-bound gain.
        max_iter: EM iterations per initialization.
        n_init: EM starts per candidate size with ``init_params`` (see above for the
            one kept).
        init_params: ``'kmeans'`` (k-means: k-means++ seeding, then Lloyd iterations;
            scikit-learn's default), ``'k-means++'``, ``'random'`` or ``'random_from_data'``.
        incumbent: the initialization of one more start, fitted first when ``X_val`` is
            given and kept unless a later one is clearly better on it (see above); None:
            none (the first of the ``n_init`` starts is then the incumbent).
        selection_patience: candidates without improvement before the search stops.
        random_state: seed of the initializations.

    Attributes:
        weights_ (k,), means_ (k, d), covariances_ ((k, d, d) full or (k, d) diag),
        cholesky_ (lower factors (k, d, d), or standard deviations (k, d) for diag),
        n_components_, selection_ (list of (k, score) in the order tried: the mean
        validation log-likelihood, or BIC without X_val; empty for an int),
        selection_criterion_ (``'val_loglik'``, ``'bic'`` or ``'none'``), converged_,
        init_scores_ (the kept size's starts in the order fitted, the incumbent first:
        mean log-likelihood of each on the data that chose among them), init_kept_ (the
        index of the start kept), init_criterion_ (``'val_loglik'`` or ``'train_loglik'``).

    References:
        A. P. Dempster, N. M. Laird and D. B. Rubin, "Maximum likelihood from incomplete
        data via the EM algorithm", JRSS B 39(1), 1977; G. Schwarz, "Estimating the
        dimension of a model", Annals of Statistics 6(2), 1978 (BIC); D. Arthur and
        S. Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007.

    Example:
        >>> import numpy as np, densbench as db
        >>> rng = np.random.default_rng(0)
        >>> X = np.vstack([rng.normal(-3, 1, (200, 2)), rng.normal(3, 1, (200, 2))])
        >>> est = db.estimators.make("gmm", n_components=[1, 2, 3, 4]).fit(X)
        >>> est.n_components_, est.selection_criterion_
        (2, 'bic')
        >>> est.means_[np.argsort(est.means_[:, 0]), 0].round(0)
        array([-3.,  3.])
    """

    _parameter_constraints: ClassVar[ParamConstraints] = {
        "n_components": SIZES,
        "covariance_type": [Options("full", "diag")],
        "reg_covar": [Interval(float, 0, None, "left")],
        "tol": [Interval(float, 0, None, "neither")],
        "max_iter": [Interval(int, 1, None)],
        "n_init": [Interval(int, 1, None)],
        "init_params": [Options("k-means++", "kmeans", "random", "random_from_data")],
        "incumbent": [Options("k-means++", "kmeans", "random", "random_from_data"), None],
        "selection_patience": [Interval(int, 1, None)],
    }

    def __init__(self, *, n_components: int | Sequence[int] = (1, 2, 4, 8, 16, 32),
                 covariance_type: str = "full", reg_covar: float = 1e-6, tol: float = 1e-3,
                 max_iter: int = 100, n_init: int = 3, init_params: str = "kmeans",
                 incumbent: str | None = "k-means++", selection_patience: int = 2,
                 random_state: int = 0) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.incumbent = incumbent
        self.selection_patience = selection_patience
        self.random_state = random_state

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"n_components": 2, "max_iter": 50, "n_init": 1}

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        n = X.shape[0]
        if is_int(self.n_components):
            k = int(self.n_components)
            if k > n:
                raise ValueError(f"{self.name}: n_components={k} exceeds the number of "
                                 f"training rows ({n})")
            self._set_state(self._em(X, k, X_val))
            self.n_components_ = k
            self.selection_: list[tuple[int, float]] = []
            self.selection_criterion_ = "none"
            return
        candidates = sorted({int(k) for k in self.n_components if k <= n})
        if not candidates:
            raise ValueError(f"{self.name}: every n_components candidate exceeds the number "
                             f"of training rows ({n})")

        def fit(k: int) -> tuple[Any, ...]:
            self._set_state(self._em(X, k, X_val))
            return self._get_state()

        chosen = select_size(self, candidates, fit, X, X_val, int(self.selection_patience))
        self.n_components_ = chosen.size
        self.selection_, self.selection_criterion_ = chosen.tried, chosen.criterion
        self._set_state(chosen.state)

    def _em(self, X: np.ndarray, k: int, X_val: np.ndarray | None) -> tuple[Any, ...]:
        """The best of ``n_init`` EM runs with ``k`` components (see the class docstring)."""
        data = X if X_val is None else X_val
        criterion = "train_loglik" if X_val is None else "val_loglik"
        seeds = start_seeds(self, int(self.n_init))
        starts = [(self.init_params, seed) for seed in seeds]
        if X_val is not None and self.incumbent is not None:
            starts.insert(0, (self.incumbent, seeds[0]))
        best: tuple[np.ndarray, int, tuple[Any, ...]] | None = None
        scores: list[float] = []
        for i, (init, seed) in enumerate(starts):
            self._set_state((*self._em_once(X, k, seed, init), criterion, [], 0))
            rows = self._score_samples(data)
            scores.append(float(np.mean(rows)))
            if best is None or (_clearly_better(rows, best[0]) if X_val is not None
                                else scores[-1] > scores[best[1]]):
                best = (rows, i, self._get_state())
        assert best is not None  # n_init >= 1
        return (*best[2][:-2], scores, best[1])

    def _em_once(self, X: np.ndarray, k: int, seed: int, init: str) -> tuple[Any, ...]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        # scikit-learn is the fitting engine only (EM); scoring and sampling are densbench's
        gm = GaussianMixture(n_components=k, covariance_type=self.covariance_type,
                             tol=float(self.tol), reg_covar=float(self.reg_covar),
                             max_iter=int(self.max_iter), n_init=1,
                             init_params=init, random_state=seed)
        # one BLAS thread: EM's products are (n x d) by (d x d) with small d, where a second
        # OpenBLAS thread only adds synchronization (benchmark group gmm-fit-10d)
        with warnings.catch_warnings(record=True) as caught, \
                threadpool_limits(limits=1, user_api="blas"), \
                engine_errors(self.name, "scikit-learn's EM"):
            warnings.simplefilter("always", ConvergenceWarning)
            gm.fit(X)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        weights = np.asarray(gm.weights_, dtype=np.float64)
        means = np.asarray(gm.means_, dtype=np.float64)
        covs = np.asarray(gm.covariances_, dtype=np.float64)
        if self.covariance_type == "full":
            chol = np.stack([covariance_cholesky(c, who=self.name) for c in covs])
        else:
            if not np.all(covs > 0.0):
                raise ValueError(f"{self.name}: a fitted variance is not positive; "
                                 f"increase reg_covar")
            chol = np.sqrt(covs)
        return weights, means, covs, chol, converged

    def _get_state(self) -> tuple[Any, ...]:
        return (self.weights_, self.means_, self.covariances_, self.cholesky_,
                self.converged_, self.init_criterion_, self.init_scores_, self.init_kept_)

    def _set_state(self, state: tuple[Any, ...]) -> None:
        (self.weights_, self.means_, self.covariances_, self.cholesky_,
         self.converged_, self.init_criterion_, self.init_scores_, self.init_kept_) = state

    # -- scoring and sampling -----------------------------------------------------------
    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        k, d = self.means_.shape
        logp = np.empty((X.shape[0], k), dtype=np.float64)
        for j in range(k):
            if self.covariance_type == "full":
                logp[:, j] = gaussian_logpdf(X, self.means_[j], self.cholesky_[j])
            else:
                z = (X - self.means_[j]) / self.cholesky_[j]
                logp[:, j] = -0.5 * (np.einsum("ij,ij->i", z, z) + d * _LOG_2PI) \
                    - float(np.sum(np.log(self.cholesky_[j])))
        return logsumexp(logp + np.log(self.weights_), axis=1)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k, d = self.means_.shape
        comp = rng.choice(k, size=n, p=self.weights_ / self.weights_.sum())
        z = rng.standard_normal((n, d))
        out = np.empty((n, d), dtype=np.float64)
        for j in range(k):
            rows = comp == j
            if self.covariance_type == "full":
                out[rows] = self.means_[j] + z[rows] @ self.cholesky_[j].T
            else:
                out[rows] = self.means_[j] + z[rows] * self.cholesky_[j]
        return out

    def _n_parameters(self) -> int:
        k, d = self.means_.shape
        cov = k * d * (d + 1) // 2 if self.covariance_type == "full" else k * d
        return (k - 1) + k * d + cov
