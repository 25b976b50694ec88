"""Gaussian kernel density estimation, exact and with bounded memory.

The density is ``p(x) = (1/n) sum_i N(x; x_i, h^2 I)``, so

    log p(x) = logsumexp_i(-||x - x_i||^2 / (2 h^2)) - log n - (d/2) log(2 pi h^2).

It is evaluated exactly (no tree, no truncation) in PyTorch float64 by
:func:`log_kernel_sums`: squared distances come in blocks of at most
``block_rows x block_train`` entries from ``||z||^2 + ||x||^2 - 2 z.x`` (one ``addmm``
into a single preallocated buffer, reused for every block, clamped at >= 0, with the data
centred on the training mean first so that the expansion loses no accuracy), and the blocks
over training points are combined by a running (online) logsumexp. An ``n_query x n_train``
matrix never exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from densbench.estimators.base import DensityEstimator

__all__ = ["KDE", "log_kernel_sums"]

_RULES = ("scott", "silverman", "cv")
#: 'cv': the coarse grid of multiples of Scott's bandwidth ...
_CV_GRID = np.geomspace(0.05, 5.0, 25)
#: ... is refined with this many log-spaced points between the best point's neighbours.
_CV_FINE = 11


def log_kernel_sums(Z: np.ndarray, train: np.ndarray, bandwidths: Sequence[float], *,
                    block_rows: int = 1024, block_train: int = 8192) -> np.ndarray:
    """``log sum_i exp(-||z - x_i||^2 / (2 h^2))`` for each row z of ``Z`` and each h.

    Returns a float64 array (n_query, n_bandwidths). Memory: one buffer of
    ``min(block_rows, n_query) * min(block_train, n_train)`` float64 values (64 MiB with
    the defaults), a second one of the same size when more than one bandwidth is
    evaluated, plus O(block_rows * n_bandwidths) for the running maxima and sums; every
    block of training points is visited once for all bandwidths.

    Example:
        >>> import numpy as np
        >>> Z, X = np.zeros((1, 2)), np.array([[0.0, 0.0], [3.0, 4.0]])
        >>> log_kernel_sums(Z, X, [1.0, 5.0]).round(6).tolist()  # log(1 + e^-12.5), log(1 + e^-0.5)
        [[4e-06, 0.474077]]
    """
    if block_rows < 1 or block_train < 1:
        raise ValueError("log_kernel_sums: block sizes must be >= 1")
    zt = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float64))
    xt = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float64))
    n, n_train, n_h = zt.shape[0], xt.shape[0], len(bandwidths)
    out = np.empty((n, n_h), dtype=np.float64)
    if n == 0:
        return out
    scales = torch.tensor([-0.5 / (float(h) * float(h)) for h in bandwidths],
                          dtype=torch.float64)
    rb, cb = min(block_rows, n), min(block_train, n_train)
    sqdist = torch.empty(rb * cb, dtype=torch.float64)          # the one distance buffer
    work = torch.empty(rb * cb, dtype=torch.float64) if n_h > 1 else sqdist
    x_sq = torch.einsum("ij,ij->i", xt, xt)                    # ||x_i||^2, n_train values
    for r0 in range(0, n, rb):
        zb = zt[r0:r0 + rb]
        m = zb.shape[0]
        z_sq = torch.einsum("ij,ij->i", zb, zb).unsqueeze(1)
        run_max = torch.full((m, n_h), -math.inf, dtype=torch.float64)
        run_sum = torch.zeros((m, n_h), dtype=torch.float64)
        block_sum = torch.empty((n_h, m), dtype=torch.float64)
        for c0 in range(0, n_train, cb):
            xb = xt[c0:c0 + cb]
            k = xb.shape[0]
            dist = sqdist[:m * k].view(m, k)
            # ||x||^2 - 2 z.x, then + ||z||^2; clamp the rounding error below 0
            torch.addmm(x_sq[c0:c0 + k].unsqueeze(0), zb, xb.T, beta=1.0, alpha=-2.0,
                        out=dist)
            dist.add_(z_sq).clamp_(min=0.0)
            # the largest logit of a row is its smallest distance times the (negative) scale
            new_max = torch.maximum(run_max, dist.amin(dim=1, keepdim=True) * scales)
            for j in range(n_h):
                # logits - max = scale * dist - max, in place (into dist itself if one h)
                logits = torch.add(-new_max[:, j:j + 1], dist, alpha=float(scales[j]),
                                   out=work[:m * k].view(m, k))
                torch.sum(logits.exp_(), dim=1, out=block_sum[j])
            run_sum.mul_(torch.exp(run_max - new_max)).add_(block_sum.T)
            run_max = new_max
        out[r0:r0 + m] = (run_max + torch.log(run_sum)).numpy()
    return out


class KDE(DensityEstimator):
    """Gaussian kernel density estimate with isotropic bandwidth (exact, blocked, float64).

    Each training point carries a Gaussian kernel with covariance ``h^2 I``. The bandwidth
    h is a float, a rule of thumb, or chosen on validation data:

    - ``'scott'``: ``h = sigma * n^(-1/(d+4))``;
    - ``'silverman'``: ``h = sigma * (n (d+2) / 4)^(-1/(d+4))``;

      where n is the number of training rows and ``sigma = sqrt(mean_j var_j)``, the root of
      the mean per-dimension sample variance (ddof=1);
    - ``'cv'``: the h maximizing the mean log-likelihood of ``X_val`` over 25 log-spaced
      multiples (0.05x to 5x) of Scott's h plus Scott's and Silverman's h themselves, then
      11 log-spaced points between the best one's neighbours. Needs ``X_val``.

    Scoring is exact (see :func:`log_kernel_sums`): memory is bounded by one buffer of
    ``block_rows x block_train`` float64 values (1024 x 8192 = 64 MiB by default; two
    during 'cv' selection) plus the stored training data, whatever the number of query or
    training rows. Samples are a uniformly chosen training point plus ``N(0, h^2 I)``.

    Parameters:
        bandwidth: a float > 0, or one of ``'scott'``, ``'silverman'``, ``'cv'``.
        random_state: unused (the fit is deterministic); kept for a uniform interface.

    Attributes:
        bandwidth_: the bandwidth h used (float).
        center_: (d,) training mean; train_: (n, d) the training data minus ``center_``.
        selection_: for 'cv', list of (h, mean validation log-likelihood), sorted by h.

    References:
        E. Parzen, "On estimation of a probability density function and mode", Annals of
        Mathematical Statistics 33(3), 1962; D. W. Scott, *Multivariate Density
        Estimation*, Wiley 1992 (Scott's rule); B. W. Silverman, *Density Estimation for
        Statistics and Data Analysis*, Chapman & Hall 1986 (Silverman's rule).

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).normal(size=(200, 2))
        >>> est = db.estimators.make("kde", bandwidth=0.5).fit(X)
        >>> direct = np.log(np.mean(np.exp(-(X ** 2).sum(1) / 0.5))) - np.log(2 * np.pi / 4)
        >>> bool(abs(est.score_samples(np.zeros((1, 2)))[0] - direct) < 1e-12)
        True
        >>> est.n_parameters()
        401
    """

    #: Query rows per distance block.
    block_rows: ClassVar[int] = 1024
    #: Training rows per distance block.
    block_train: ClassVar[int] = 8192

    def __init__(self, *, bandwidth: float | str = "scott", random_state: int = 0) -> None:
        self.bandwidth = bandwidth
        self.random_state = random_state

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"bandwidth": "scott"}

    def _validate_params(self) -> None:
        b = self.bandwidth
        if isinstance(b, str):
            ok = b in _RULES
        else:
            ok = (isinstance(b, int | float | np.integer | np.floating)
                  and not isinstance(b, bool) and 0 < b < math.inf)
        if not ok:
            raise self._bad_param("bandwidth", "> 0 or one of 'scott', 'silverman', 'cv'", b)

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        n, d = X.shape
        if self.bandwidth == "cv" and X_val is None:
            raise ValueError(f"{self.name}: bandwidth='cv' needs X_val")
        self.center_ = X.mean(axis=0)
        self.train_ = np.ascontiguousarray(X - self.center_)
        self.selection_: list[tuple[float, float]] = []
        if not isinstance(self.bandwidth, str):
            self.bandwidth_ = float(self.bandwidth)
            return
        sigma = math.sqrt(float(np.mean(np.var(X, axis=0, ddof=1))))
        if not sigma > 0.0:
            raise ValueError(f"{self.name}: the training data have zero variance; give "
                             f"bandwidth as a float")
        scott = sigma * n ** (-1.0 / (d + 4))
        silverman = sigma * (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
        if self.bandwidth == "scott":
            self.bandwidth_ = scott
        elif self.bandwidth == "silverman":
            self.bandwidth_ = silverman
        else:
            assert X_val is not None
            self.bandwidth_ = self._select(X_val, scott, silverman)

    def _select(self, X_val: np.ndarray, scott: float, silverman: float) -> float:
        """'cv': coarse grid (with Scott and Silverman), then a finer grid around the best."""
        tried: dict[float, float] = {}

        def evaluate(hs: np.ndarray) -> None:
            hs = np.array([h for h in hs if float(h) not in tried])
            if hs.size:
                for h, s in zip(hs, self._mean_loglik(X_val, hs), strict=True):
                    tried[float(h)] = float(s)

        evaluate(np.concatenate([scott * _CV_GRID, [scott, silverman]]))
        hs = sorted(tried)
        i = max(range(len(hs)), key=lambda j: (tried[hs[j]], -j))
        lo, hi = hs[max(i - 1, 0)], hs[min(i + 1, len(hs) - 1)]
        if hi > lo:
            evaluate(np.geomspace(lo, hi, _CV_FINE))
        self.selection_ = sorted(tried.items())
        # the best score; the smallest such h on ties
        return max(self.selection_, key=lambda hs_: (hs_[1], -hs_[0]))[0]

    def _mean_loglik(self, X: np.ndarray, hs: np.ndarray) -> np.ndarray:
        n, d = self.train_.shape
        sums = log_kernel_sums(X - self.center_, self.train_, list(hs),
                               block_rows=self.block_rows, block_train=self.block_train)
        norm = math.log(n) + 0.5 * d * np.log(2.0 * math.pi * hs ** 2)
        return np.mean(sums, axis=0) - norm

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        n, d = self.train_.shape
        h = self.bandwidth_
        sums = log_kernel_sums(X - self.center_, self.train_, [h],
                               block_rows=self.block_rows, block_train=self.block_train)
        return sums[:, 0] - math.log(n) - 0.5 * d * math.log(2.0 * math.pi * h * h)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        idx = rng.integers(0, self.train_.shape[0], size=n)
        eps = rng.standard_normal((n, self.n_features_in_))
        return self.center_ + self.train_[idx] + self.bandwidth_ * eps

    def _n_parameters(self) -> int:
        return int(self.train_.size) + 1
