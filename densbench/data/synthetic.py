"""Synthetic datasets with an exact, closed-form log-density.

Each dataset is a :class:`~densbench.data.base.Truth` (an exact ``log_prob`` in float64 nats
and a sampler) plus a registered loader that draws the train, validation and test splits from
:func:`~densbench.data.base.split_rng`. The true distribution never depends on the split seed:
its parameters are fixed (random mixtures are drawn from a separate, fixed ``truth_seed``), so
seeds differ only in which points are drawn and results across seeds estimate the same thing.

Example:
    >>> import numpy as np
    >>> ds = eight_gaussians(seed=0, n_train=100, n_val=10, n_test=10)
    >>> ds.train.shape, ds.has_truth, ds.params["sd"]
    ((100, 2), True, 0.2)
    >>> bool(np.all(np.isfinite(ds.log_prob(ds.test))))
    True
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.linalg import solve_triangular
from scipy.special import logsumexp

from densbench.data.base import Dataset, Truth, split_rng

__all__ = [
    "BananaTruth",
    "CheckerboardTruth",
    "FunnelTruth",
    "GaussianMixtureTruth",
    "banana",
    "checkerboard",
    "eight_gaussians",
    "funnel",
    "gmm10",
    "gmm50",
    "grid_5x5",
    "make_synthetic",
    "random_gaussian_mixture",
]

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# helpers


def _as_points(X: np.ndarray, dim: int, owner: str) -> np.ndarray:
    """``X`` as a float64 (n, dim) array, or a ValueError naming ``owner``."""
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{owner}: X must have shape (n, {dim}); got {arr.shape}")
    return arr


def _check_count(name: str, label: str, value: Any) -> int:
    """An int >= 1 (bools refused), or a ValueError naming dataset ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"dataset {name}: {label} must be an int >= 1; got {value!r}")
    return int(value)


def _check_positive(name: str, label: str, value: Any) -> float:
    """A finite real > 0, or a ValueError naming dataset ``name``."""
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real)
          and math.isfinite(value) and value > 0)
    if not ok:
        raise ValueError(f"dataset {name}: {label} must be a finite number > 0; got {value!r}")
    return float(value)


def _check_finite(name: str, label: str, value: Any) -> float:
    """A finite real, or a ValueError naming dataset ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"dataset {name}: {label} must be a finite number; got {value!r}")
    return float(value)


def _check_seed(name: str, label: str, value: Any) -> int:
    """An int >= 0, or a ValueError naming dataset ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"dataset {name}: {label} must be an int >= 0; got {value!r}")
    return int(value)


def make_synthetic(name: str, truth: Truth, seed: int, n_train: int, n_val: int, n_test: int,
                   params: dict[str, Any], *,
                   sequence_shape: tuple[int, int] | None = None) -> Dataset:
    """Draw the train, val and test splits (in that order) of ``truth`` for ``seed``.

    The draws come from ``split_rng(name, seed)``; the truth itself is fixed by the caller.
    ``params`` is stored on the dataset as given (every loader parameter, for provenance);
    ``sequence_shape`` is the dataset's (T, D) when its rows are sequences.
    Sizes must be ints >= 1 and ``seed`` an int >= 0 (ValueError naming ``name`` otherwise).

    Example:
        >>> t = GaussianMixtureTruth([1.0], [[0.0]], [[[1.0]]])
        >>> ds = make_synthetic("toy", t, 0, 5, 2, 3, {"n_train": 5})
        >>> ds.train.shape, ds.val.shape, ds.test.shape, ds.params
        ((5, 1), (2, 1), (3, 1), {'n_train': 5})
    """
    seed = _check_seed(name, "seed", seed)
    sizes = {label: _check_count(name, label, value)
             for label, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test))}
    rng = split_rng(name, seed)
    train, val, test = (np.ascontiguousarray(truth.sample(sizes[label], rng), dtype=np.float64)
                        for label in ("n_train", "n_val", "n_test"))
    return Dataset(name=name, seed=seed, train=train, val=val, test=test, kind="continuous",
                   truth=truth, params=dict(params), sequence_shape=sequence_shape,
                   description=f"synthetic {name}, {truth.dim}-D, exact density")


# --------------------------------------------------------------------------------------------
# truths


class GaussianMixtureTruth(Truth):
    """A finite mixture of full-covariance Gaussians, ``sum_k w_k N(x; mu_k, Sigma_k)``.

    ``log_prob`` uses each component's Cholesky factor in float64 and combines the components
    with ``logsumexp``, so it stays finite far from the data. ``weights`` (K,) must be positive
    and sum to 1, ``means`` is (K, d) and ``covs`` (K, d, d) symmetric positive definite.

    Example:
        >>> t = GaussianMixtureTruth([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]],
        ...                          [np.eye(2), np.eye(2)])
        >>> t.dim, round(float(t.log_prob(np.array([[1.0, 0.0]]))[0]), 6)
        (2, -2.404096)
    """

    def __init__(self, weights: ArrayLike, means: ArrayLike,
                 covs: ArrayLike) -> None:
        owner = type(self).__name__
        w = np.asarray(weights, dtype=np.float64)
        mu = np.asarray(means, dtype=np.float64)
        cov = np.asarray(covs, dtype=np.float64)
        if w.ndim != 1 or w.size < 1:
            raise ValueError(f"{owner}: weights must be a non-empty 1-D array; got {w.shape}")
        k = w.size
        if mu.ndim != 2 or mu.shape[0] != k:
            raise ValueError(f"{owner}: means must have shape ({k}, d); got {mu.shape}")
        d = mu.shape[1]
        if cov.shape != (k, d, d):
            raise ValueError(f"{owner}: covs must have shape ({k}, {d}, {d}); got {cov.shape}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(mu)) and np.all(np.isfinite(cov))):
            raise ValueError(f"{owner}: weights, means and covs must be finite")
        if np.any(w <= 0) or abs(w.sum() - 1.0) > 1e-10:
            raise ValueError(f"{owner}: weights must be > 0 and sum to 1; got sum {w.sum()!r}")
        if not np.allclose(cov, np.swapaxes(cov, 1, 2), rtol=1e-12, atol=1e-12):
            raise ValueError(f"{owner}: covs must be symmetric")
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(f"{owner}: covs must be positive definite") from None
        self.dim = int(d)
        self.weights = w / w.sum()
        self.means = mu
        self.covs = cov
        self._chol = chol
        self._log_weights = np.log(self.weights)
        self._log_dets = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)

    @property
    def n_components(self) -> int:
        return int(self.weights.size)

    def component_log_prob(self, X: np.ndarray) -> np.ndarray:
        """``log w_k + log N(x; mu_k, Sigma_k)`` per row and component, shape (n, K)."""
        X = _as_points(X, self.dim, type(self).__name__)
        out = np.empty((X.shape[0], self.n_components), dtype=np.float64)
        for k in range(self.n_components):
            z = solve_triangular(self._chol[k], (X - self.means[k]).T, lower=True,
                                 check_finite=False)
            maha = np.einsum("ij,ij->j", z, z)
            out[:, k] = (self._log_weights[k]
                         - 0.5 * (self.dim * _LOG_2PI + self._log_dets[k] + maha))
        return out

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        return logsumexp(self.component_log_prob(X), axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        comps = rng.choice(self.n_components, size=int(n), p=self.weights)
        z = rng.standard_normal((int(n), self.dim))
        out = np.empty((int(n), self.dim), dtype=np.float64)
        for k in range(self.n_components):
            idx = comps == k
            out[idx] = self.means[k] + z[idx] @ self._chol[k].T
        return out


class CheckerboardTruth(Truth):
    """Uniform on the 8 "black" unit squares of a 4x4 board on [-2, 2]^2.

    A square ``[i, i+1) x [j, j+1)`` is black when ``i + j`` is even. The density is 1/8 there
    and exactly 0 elsewhere, so ``log_prob`` is ``-log 8`` or ``-inf`` (NaN rows give NaN).

    Example:
        >>> t = CheckerboardTruth()
        >>> t.log_prob(np.array([[0.5, 0.5], [0.5, -0.5], [3.0, 0.0]]))
        array([-2.07944154,        -inf,        -inf])
    """

    dim = 2
    half_width = 2

    def __init__(self) -> None:
        h = self.half_width
        self._corners = np.array([(i, j) for i in range(-h, h) for j in range(-h, h)
                                  if (i + j) % 2 == 0], dtype=np.float64)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        X = _as_points(X, self.dim, type(self).__name__)
        h = self.half_width
        finite = np.all(np.isfinite(X), axis=1)
        Xf = np.where(finite[:, None], X, 0.0)
        cells = np.floor(Xf)
        inside = (finite & np.all((Xf >= -h) & (Xf < h), axis=1)
                  & (np.sum(cells, axis=1) % 2 == 0))
        out = np.where(inside, -math.log(len(self._corners)), -np.inf)
        out[np.any(np.isnan(X), axis=1)] = np.nan
        return out

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        squares = rng.integers(len(self._corners), size=int(n))
        return self._corners[squares] + rng.random((int(n), self.dim))


class BananaTruth(Truth):
    """A Gaussian bent into a banana by ``x1 = z1, x2 = z2 + b (z1^2 - 1)``.

    ``z ~ N(0, diag(sd1^2, sd2^2))``; the map has unit Jacobian, so
    ``log p(x) = log N(x1; 0, sd1^2) + log N(x2 - b (x1^2 - 1); 0, sd2^2)`` exactly.

    Example:
        >>> t = BananaTruth(curvature=1.0)
        >>> round(float(t.log_prob(np.array([[0.0, -1.0]]))[0]), 6)  # z = (0, 0): the mode
        -1.14473
    """

    dim = 2

    def __init__(self, curvature: float = 1.0, sd1: float = 1.0, sd2: float = 0.5) -> None:
        self.curvature = float(curvature)
        self.sd1 = float(sd1)
        self.sd2 = float(sd2)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        X = _as_points(X, self.dim, type(self).__name__)
        with np.errstate(over="ignore", invalid="ignore"):
            z1 = X[:, 0]
            z2 = X[:, 1] - self.curvature * (np.square(z1) - 1.0)
            return (-0.5 * np.square(z1 / self.sd1) - math.log(self.sd1)
                    - 0.5 * np.square(z2 / self.sd2) - math.log(self.sd2) - _LOG_2PI)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((int(n), 2)) * np.array([self.sd1, self.sd2])
        z[:, 1] += self.curvature * (np.square(z[:, 0]) - 1.0)
        return z


class FunnelTruth(Truth):
    """Neal's funnel: ``v ~ N(0, v_sd^2)`` and ``x_i | v ~ N(0, exp(v))``, i = 1..dim-1.

    Coordinate 0 is ``v``. ``log p = log N(v; 0, v_sd^2) + sum_i log N(x_i; 0, e^v)``; the
    conditional term is evaluated as ``-(log 2 pi + v + x_i^2 e^-v) / 2`` without forming
    ``e^v``, and gives ``-inf`` (not a warning) where ``x_i^2 e^-v`` overflows.

    References:
        Neal, R. M. (2003). Slice sampling. The Annals of Statistics, 31(3), 705-767.

    Example:
        >>> t = FunnelTruth(dim=3)
        >>> round(float(t.log_prob(np.zeros((1, 3)))[0]), 6)
        -3.855428
    """

    def __init__(self, dim: int = 2, v_sd: float = 3.0) -> None:
        self.dim = int(dim)
        self.v_sd = float(v_sd)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        X = _as_points(X, self.dim, type(self).__name__)
        v = X[:, 0]
        x = X[:, 1:]
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = np.square(x) * np.exp(-v)[:, None]
            scaled = np.where(x == 0.0, 0.0, scaled)  # 0 * inf at v -> -inf is 0
            cond = -0.5 * (_LOG_2PI + v[:, None] + scaled)
            lp_v = -0.5 * np.square(v / self.v_sd) - math.log(self.v_sd) - 0.5 * _LOG_2PI
            return lp_v + np.sum(cond, axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        v = rng.standard_normal(int(n)) * self.v_sd
        x = rng.standard_normal((int(n), self.dim - 1)) * np.exp(0.5 * v)[:, None]
        return np.column_stack([v, x])


def random_gaussian_mixture(dim: int, n_components: int, truth_seed: int) -> GaussianMixtureTruth:
    """The fixed random mixture behind ``gmm10`` and ``gmm50``, drawn from ``truth_seed``.

    From ``np.random.default_rng(truth_seed)``, in this order: weights ~ Dirichlet(5 * ones);
    means ~ N(0, (9 / dim) I), so two means lie about 3 sqrt(2) ~ 4.2 apart in any dimension
    (in 10-D the components overlap a little, a Bayes error of about 0.5% for truth_seed 0;
    in 50-D their differing covariances alone separate them); covariances
    ``s_k (A A^T / dim + 0.1 I)`` with ``A`` standard normal (dim, dim) and ``s_k`` scaling the
    mean variance ``trace / dim`` to a value drawn uniformly in [0.5, 1].
    """
    rng = np.random.default_rng(truth_seed)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = rng.standard_normal((n_components, dim)) * (3.0 / math.sqrt(dim))
    covs = np.empty((n_components, dim, dim))
    for k in range(n_components):
        A = rng.standard_normal((dim, dim))
        c = A @ A.T / dim + 0.1 * np.eye(dim)
        target = rng.uniform(0.5, 1.0)
        c *= target / (np.trace(c) / dim)
        covs[k] = 0.5 * (c + c.T)
    return GaussianMixtureTruth(weights, means, covs)


# --------------------------------------------------------------------------------------------
# loaders


def eight_gaussians(seed: int = 0, *, n_train: int = 5000, n_val: int = 1000,
                    n_test: int = 5000, radius: float = 2.0, sd: float = 0.2) -> Dataset:
    """8 equal-weight isotropic Gaussians on a circle (2-D, exact density).

    Means at ``radius * (cos(k pi / 4), sin(k pi / 4))``, k = 0..7, standard deviation ``sd``.

    References:
        The "8 Gaussians" toy problem of Grathwohl et al. (2019), FFJORD: Free-form
        continuous dynamics for scalable reversible generative models, ICLR (their scale
        differs).
    """
    name = "eight_gaussians"
    radius = _check_positive(name, "radius", radius)
    sd = _check_positive(name, "sd", sd)
    angles = np.arange(8) * (math.pi / 4.0)
    means = radius * np.column_stack([np.cos(angles), np.sin(angles)])
    truth = GaussianMixtureTruth(np.full(8, 1.0 / 8.0), means,
                                 np.broadcast_to(sd * sd * np.eye(2), (8, 2, 2)))
    params = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "radius": radius, "sd": sd}
    return make_synthetic(name, truth, seed, n_train, n_val, n_test, params)


def grid_5x5(seed: int = 0, *, n_train: int = 5000, n_val: int = 1000, n_test: int = 5000,
             sd: float = 0.1) -> Dataset:
    """25 equal-weight isotropic Gaussians on the grid {-2,-1,0,1,2}^2 (2-D, exact density).

    References:
        The 2-D grid of 25 Gaussians of Srivastava et al. (2017), VEEGAN: Reducing mode
        collapse in GANs using implicit variational learning, NeurIPS (their scale differs).
    """
    name = "grid_5x5"
    sd = _check_positive(name, "sd", sd)
    ticks = np.arange(-2.0, 3.0)
    means = np.array([(a, b) for a in ticks for b in ticks])
    truth = GaussianMixtureTruth(np.full(25, 1.0 / 25.0), means,
                                 np.broadcast_to(sd * sd * np.eye(2), (25, 2, 2)))
    params = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "sd": sd}
    return make_synthetic(name, truth, seed, n_train, n_val, n_test, params)


def checkerboard(seed: int = 0, *, n_train: int = 5000, n_val: int = 1000,
                 n_test: int = 5000) -> Dataset:
    """Uniform on the 8 black squares of a 4x4 checkerboard on [-2, 2]^2 (2-D, exact density).

    The density is 1/8 on the squares ``[i, i+1) x [j, j+1)`` with ``i + j`` even and 0
    elsewhere (its true log-density is ``-inf`` off the board).

    References:
        The checkerboard toy problem of Grathwohl et al. (2019), FFJORD: Free-form continuous
        dynamics for scalable reversible generative models, ICLR.
    """
    params = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    return make_synthetic("checkerboard", CheckerboardTruth(), seed, n_train, n_val, n_test,
                          params)


def banana(seed: int = 0, *, n_train: int = 5000, n_val: int = 1000, n_test: int = 5000,
           curvature: float = 1.0) -> Dataset:
    """A banana-shaped bent Gaussian (2-D, exact density).

    ``z ~ N(0, diag(1, 0.5^2))`` mapped by ``x1 = z1, x2 = z2 + curvature * (z1^2 - 1)``.

    References:
        A variant of the twisted Gaussian of Haario, Saksman & Tamminen (1999), Adaptive
        proposal distribution for random walk Metropolis algorithm, Computational
        Statistics 14(3), 375-395.
    """
    name = "banana"
    curvature = _check_finite(name, "curvature", curvature)
    params = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "curvature": curvature}
    return make_synthetic(name, BananaTruth(curvature), seed, n_train, n_val, n_test, params)


def funnel(seed: int = 0, *, n_train: int = 5000, n_val: int = 1000, n_test: int = 5000,
           dim: int = 2) -> Dataset:
    """Neal's funnel: v ~ N(0, 9), x_i | v ~ N(0, e^v) (exact density; dim 2 by default).

    Coordinate 0 is ``v``; coordinates 1..dim-1 are the ``x_i``. Its scale varies over
    orders of magnitude along ``v``, which trips estimators with a single bandwidth or scale.

    References:
        Neal, R. M. (2003). Slice sampling. The Annals of Statistics, 31(3), 705-767.
    """
    name = "funnel"
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 2:
        raise ValueError(f"dataset {name}: dim must be an int >= 2; got {dim!r}")
    dim = int(dim)
    params = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "dim": dim}
    return make_synthetic(name, FunnelTruth(dim), seed, n_train, n_val, n_test, params)


def _gmm_loader(name: str, dim: int, seed: int, n_train: int, n_val: int, n_test: int,
                n_components: int, truth_seed: int) -> Dataset:
    n_components = _check_count(name, "n_components", n_components)
    truth_seed = _check_seed(name, "truth_seed", truth_seed)
    truth = random_gaussian_mixture(dim, n_components, truth_seed)
    params = {"n_train": n_train, "n_val": n_val, "n_test": n_test,
              "n_components": n_components, "truth_seed": truth_seed}
    return make_synthetic(name, truth, seed, n_train, n_val, n_test, params)


def gmm10(seed: int = 0, *, n_train: int = 5000, n_val: int = 1000, n_test: int = 5000,
          n_components: int = 5, truth_seed: int = 0) -> Dataset:
    """A fixed random 5-component full-covariance Gaussian mixture in 10-D (exact density).

    The mixture is drawn from ``truth_seed`` (see :func:`random_gaussian_mixture`), never from
    the split ``seed``, so every seed samples the same distribution.
    """
    return _gmm_loader("gmm10", 10, seed, n_train, n_val, n_test, n_components, truth_seed)


def gmm50(seed: int = 0, *, n_train: int = 5000, n_val: int = 1000, n_test: int = 5000,
          n_components: int = 5, truth_seed: int = 0) -> Dataset:
    """A fixed random 5-component full-covariance Gaussian mixture in 50-D (exact density).

    The mixture is drawn from ``truth_seed`` (see :func:`random_gaussian_mixture`), never from
    the split ``seed``, so every seed samples the same distribution.
    """
    return _gmm_loader("gmm50", 50, seed, n_train, n_val, n_test, n_components, truth_seed)
