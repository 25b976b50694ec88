"""Transport distances: :func:`sliced_wasserstein` and the Frechet distance between fitted
Gaussians (:func:`frechet_distance`, :func:`gaussian_frechet_distance`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import ot

from densbench.metrics.base import mean_se
from densbench.metrics.samples.dispatch import _computes
from densbench.metrics.samples.points import SampleScore, _as_points, _need_rows, _pair

__all__ = ["frechet_distance", "gaussian_frechet_distance", "sliced_wasserstein"]

#: Values of the sliced-Wasserstein projections per call to POT: 4 Mi float64 = 32 MiB.
_PROJECTION_BLOCK = 4 * 1024 * 1024


@_computes("sliced_wasserstein", seeded=True)
def sliced_wasserstein(X: np.ndarray, Y: np.ndarray, *, n_projections: int = 200,
                       p: int = 1, seed: int = 0) -> SampleScore:
    """Sliced p-Wasserstein distance ``(E_theta W_p^p(theta.X, theta.Y))^(1/p)``, POT's
    ``ot.sliced_wasserstein_distance``.

    The ``n_projections`` directions are drawn uniformly on the sphere from
    ``np.random.default_rng(seed)`` (Gaussian, normalized) and handed to POT, which does the
    1-D optimal transport; POT is called on groups of directions so that the projected data
    stay below 32 MiB. ``p = 1`` (default) is the mean over directions of the 1-D earth
    mover's distance, in the data's units; in 1-D every direction is +-1 and it equals
    ``scipy.stats.wasserstein_distance``.

    Standard error: Monte-Carlo over directions only (the spread of the per-direction
    ``W_p^p`` over sqrt(n_projections), through the delta method for p > 1). It says how
    much another ``seed`` would move the value, not how much another sample of ``X`` or
    ``Y`` would (that is the floor's job); it is 0 (up to rounding) in 1-D.

    ``extra``: ``n_projections``, ``p``.

    References:
        N. Bonneel, J. Rabin, G. Peyre, H. Pfister, "Sliced and Radon Wasserstein
        barycenters of measures", Journal of Mathematical Imaging and Vision 51, 2015;
        R. Flamary et al., "POT: Python Optimal Transport", JMLR 22(78), 2021.

    Example:
        >>> from scipy.stats import wasserstein_distance
        >>> x, y = np.array([0.0, 1.0, 3.0]), np.array([1.0, 2.0])
        >>> s = sliced_wasserstein(x, y)
        >>> bool(abs(s.value - wasserstein_distance(x, y)) < 1e-12), bool(s.se < 1e-12)
        (True, True)
    """
    x, y = _pair(X, Y)
    if int(n_projections) < 2:
        raise ValueError(f"sliced_wasserstein: n_projections must be >= 2; got {n_projections}")
    if p < 1:
        raise ValueError(f"sliced_wasserstein: p must be >= 1; got {p}")
    n_proj = int(n_projections)
    d = x.shape[1]
    theta = np.random.default_rng(seed).standard_normal((d, n_proj))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    group = max(1, _PROJECTION_BLOCK // max(x.shape[0], y.shape[0]))
    per = np.empty(n_proj, dtype=np.float64)      # W_p^p along each direction
    for c0 in range(0, n_proj, group):
        _, log = ot.sliced_wasserstein_distance(x, y, p=p, projections=theta[:, c0:c0 + group],
                                                log=True)
        per[c0:c0 + group] = np.asarray(log["projected_emds"], dtype=np.float64)
    mean, se_mean = mean_se(per)
    value = mean ** (1.0 / p)
    # delta method: d/dm m^(1/p) = m^(1/p - 1) / p
    se = se_mean if p == 1 else (0.0 if mean <= 0.0 else se_mean * value / (p * mean))
    return SampleScore(float(value), float(se), {"n_projections": n_proj, "p": p})


def gaussian_frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray,
                              cov2: np.ndarray) -> float:
    """Squared Frechet (2-Wasserstein) distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)``:
    ``|mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2))``.

    The trace of the matrix square root is computed as ``sum_i sqrt(lambda_i)`` over the
    eigenvalues of the symmetric ``cov1^(1/2) cov2 cov1^(1/2)`` (which has the eigenvalues
    of ``cov1 cov2``), ``cov1^(1/2)`` from ``eigh``, negative rounding-error eigenvalues set
    to 0: no complex parts, no ridge, exact for singular covariances. Clamped at >= 0.

    Example:
        >>> # 1-D: (mu1 - mu2)^2 + (s1 - s2)^2 = 1 + 1
        >>> gaussian_frechet_distance(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1))
        2.0
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2,
                                                                                    np.float64))
    c1, c2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2,
                                                                                   np.float64))
    w, v = np.linalg.eigh((c1 + c1.T) / 2.0)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = root1 @ c2 @ root1
    lam = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    tr_sqrt = float(np.sum(np.sqrt(np.clip(lam, 0.0, None))))
    diff = mu1 - mu2
    value = float(diff @ diff) + float(np.trace(c1) + np.trace(c2)) - 2.0 * tr_sqrt
    return max(value, 0.0)


@_computes("frechet_distance")
def frechet_distance(X: np.ndarray, Y: np.ndarray,
                     features: Callable[[np.ndarray], np.ndarray] | None = None) -> SampleScore:
    """Frechet distance between Gaussians fitted to the features of ``X`` and of ``Y``
    (FID's formula, :func:`gaussian_frechet_distance`; means and ``ddof=1`` covariances).

    ``features``: a callable mapping an (n, d) array to (n, f) features (for images, a
    classifier's penultimate layer). ``None`` (tabular data): both samples are standardized
    by ``Y``'s per-column mean and standard deviation (``ddof=1``; a constant column is left
    unscaled), so the value is in squared units of the data's standard deviations and a
    mean shift of ``delta`` sd along one axis adds about ``delta^2``. The finite-sample floor
    is positive (of order ``f / n + f^2 / n`` for f features); no standard error is given
    (``se=None``): read it beside the floor.

    ``extra``: ``n_features``.

    References:
        M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter, "GANs trained by
        a two time-scale update rule converge to a local Nash equilibrium", NeurIPS 2017;
        D. C. Dowson, B. V. Landau, "The Frechet distance between multivariate normal
        distributions", Journal of Multivariate Analysis 12(3), 1982.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> Y = rng.normal(size=(2000, 2))
        >>> round(frechet_distance(Y + [1.0, 0.0], Y).value, 6)  # (1 / sd_0)^2, about 1
        0.995249
    """
    x, y = _pair(X, Y)
    if features is None:
        centre = y.mean(axis=0)
        scale = y.std(axis=0, ddof=1) if y.shape[0] > 1 else np.ones(y.shape[1])
        scale = np.where(scale > 0.0, scale, 1.0)
        fx, fy = (x - centre) / scale, (y - centre) / scale
    else:
        fx = _as_points(features(x), "features(X)")
        fy = _as_points(features(y), "features(Y)", fx.shape[1])
    _need_rows(fx, "X", 2, "frechet_distance")
    _need_rows(fy, "Y", 2, "frechet_distance")
    value = gaussian_frechet_distance(fx.mean(axis=0), np.cov(fx, rowvar=False),
                                      fy.mean(axis=0), np.cov(fy, rowvar=False))
    return SampleScore(value, None, {"n_features": int(fx.shape[1])})
