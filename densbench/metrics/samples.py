"""Sample quality: how far a model's samples ``X`` (n, d) lie from held-out data ``Y`` (m, d).

Every metric is a plain function returning a :class:`SampleScore` (value, standard error or
``None``, and a dict of extras); :func:`sample_metrics` computes them all. Their units,
directions and meanings are in :data:`densbench.metrics.catalogue.SAMPLE_METRICS`.

- :func:`mmd2`: unbiased squared maximum mean discrepancy, mean of RBF kernels at multiples
  of the median-heuristic bandwidth, with the U-statistic's standard error;
- :func:`energy_distance`: the (squared) energy distance, unbiased by default;
- :func:`sliced_wasserstein`: POT's Monte-Carlo sliced Wasserstein distance;
- :func:`c2st`: classifier two-sample test accuracy (0.5 is ideal);
- :func:`prdc`: precision, recall, density and coverage from k-NN balls;
- :func:`frechet_distance`: Frechet distance between Gaussians fitted to features;
- :func:`memorization_ratio`: samples' distance to the training set relative to fresh data's.

Pairwise work is done in blocks: a distance block is at most ``_BLOCK_ROWS x _BLOCK_COLS``
float64 values (512 x 1024 = 4 MiB), and at most four such buffers exist at once (the
squared distances; for a mean of several kernels an accumulator and a scratch buffer; the
distances themselves for the energy distance, computed in the same pass as :func:`mmd2`
by :func:`sample_metrics`; :func:`prdc` adds two boolean masks of a block), whatever n and
m: under 20 MiB, where one n x m float64 matrix would take 490 MiB for n = m = 8000.
Squared distances come from ``||a||^2 + ||b||^2 - 2 a.b`` (one ``addmm``, clamped at >= 0)
after both samples are centred on a common point, in PyTorch float64.
All randomness (bandwidth subsample, projections, classifier, bootstrap) comes from ``seed``.

Every number here has a finite-sample floor: a perfect model's samples score what a second
held-out sample from the data distribution scores (validation split vs test split), not the
ideal value (0 for a discrepancy, the catalogue's target for C2ST accuracy, density and the
memorization ratio); read a value beside that floor.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
import ot
import sklearn
import torch
import torch.nn.functional as F
from scipy.spatial.distance import pdist
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.neighbors import NearestNeighbors

from densbench.metrics import catalogue
from densbench.metrics.base import Metric, mean_se
from densbench.metrics.catalogue import SAMPLE_METRICS
from densbench.registry import UnknownNameError

__all__ = [
    "SampleScore",
    "c2st",
    "common_scale",
    "energy_distance",
    "failed",
    "frechet_distance",
    "gaussian_frechet_distance",
    "median_heuristic",
    "memorization_ratio",
    "mmd2",
    "prdc",
    "sample_metrics",
    "sliced_wasserstein",
    "to_metrics",
]

#: Rows (of X) and columns (of Y) per pairwise block: 512 Ki float64 values = 4 MiB, so
#: the several elementwise passes over a block (kernels, sums) find it in the cache, where
#: larger blocks send every pass out to main memory and smaller ones add per-block
#: overhead.
_BLOCK_ROWS = 512
_BLOCK_COLS = 1024
#: The median heuristic looks at the pairwise distances of at most this many pooled points.
_MEDIAN_SUBSAMPLE = 1000
#: Multiples of the median distance whose RBF kernels :func:`mmd2` averages.
MMD_BANDWIDTH_MULTIPLES = (0.5, 1.0, 2.0)
#: Values of the sliced-Wasserstein projections per call to POT: 4 Mi float64 = 32 MiB.
_PROJECTION_BLOCK = 4 * 1024 * 1024
#: sklearn's scratch memory (MiB) for nearest-neighbour queries.
_WORKING_MEMORY_MIB = 64


@dataclass(frozen=True)
class SampleScore:
    """One sample-quality figure: ``value``, its standard error (``None`` when the metric has
    none) and metric-specific ``extra`` details (bandwidths, per-fold accuracies, ...)."""

    value: float
    se: float | None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class _How:
    """How :func:`sample_metrics` calls a sample metric's function ``fn``: with ``seed=``
    when ``seeded``, as ``fn(X, train, Y)`` when ``needs_train``; ``unit_extras`` are the
    keys of a score's ``extra`` in the data's units. Whether the value and SE are in the
    data's units is the catalogue's unit (``data units``)."""

    fn: Callable[..., Any]
    seeded: bool = False
    needs_train: bool = False
    unit_extras: tuple[str, ...] = ()


#: The function of each sample metric, filled by :func:`_computes` where each is defined.
_HOW: dict[str, _How] = {}

_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _computes(*names: str, seeded: bool = False, needs_train: bool = False,
              unit_extras: tuple[str, ...] = ()) -> Callable[[_Fn], _Fn]:
    """Declare the decorated function as the one :func:`sample_metrics` calls for the
    catalogue's sample metrics ``names`` (a function of several returns a dict of
    :class:`SampleScore` keyed by name). A name the catalogue lacks is an error here, so
    no metric is computed that a record could not describe."""
    unknown = [n for n in names if n not in SAMPLE_METRICS]
    if unknown:
        raise UnknownNameError(f"sample metric {unknown[0]!r} has no entry in "
                               "densbench.metrics.catalogue.SAMPLE_METRICS")

    def declare(fn: _Fn) -> _Fn:
        for name in names:
            _HOW[name] = _How(fn, seeded, needs_train, unit_extras)
        return fn

    return declare


# --------------------------------------------------------------------------------------------
# inputs and blocked pairwise work


def _as_points(A: Any, label: str, dim: int | None = None) -> np.ndarray:
    """``A`` as a C-contiguous float64 (n, d) array; a 1-D array is n points in one dimension."""
    a = np.asarray(A, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{label} must be a 2-D array (n, d); got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{label} is empty")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{label} has {a.shape[1]} columns; expected {dim}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{label} contains NaN or infinite values")
    return np.ascontiguousarray(a)


def _pair(X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = _as_points(X, "X")
    return x, _as_points(Y, "Y", x.shape[1])


def _need_rows(a: np.ndarray, label: str, at_least: int, owner: str) -> None:
    if a.shape[0] < at_least:
        raise ValueError(f"{owner}: {label} needs at least {at_least} rows; got {a.shape[0]}")


def _centred(*arrays: np.ndarray) -> list[torch.Tensor]:
    """Tensors of the arrays minus their pooled mean (keeps ``||a||^2 + ||b||^2 - 2 a.b``
    accurate)."""
    centre = np.concatenate(arrays).mean(axis=0)
    return [torch.from_numpy(np.ascontiguousarray(a - centre)) for a in arrays]


def _sq_dist_blocks(A: torch.Tensor, B: torch.Tensor
                    ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(r0, c0, D)`` with ``D[i, j] = ||A[r0 + i] - B[c0 + j]||^2``, block by block.

    ``D`` is a view into one buffer that is overwritten by the next block.
    """
    n, m = A.shape[0], B.shape[0]
    rb, cb = min(_BLOCK_ROWS, n), min(_BLOCK_COLS, m)
    buf = torch.empty(rb * cb, dtype=torch.float64)
    b_sq = torch.einsum("ij,ij->i", B, B)
    for r0 in range(0, n, rb):
        a = A[r0:r0 + rb]
        a_sq = torch.einsum("ij,ij->i", a, a).unsqueeze(1)
        for c0 in range(0, m, cb):
            b = B[c0:c0 + cb]
            d2 = buf[:a.shape[0] * b.shape[0]].view(a.shape[0], b.shape[0])
            torch.addmm(b_sq[c0:c0 + b.shape[0]].unsqueeze(0), a, b.T, beta=1.0, alpha=-2.0,
                        out=d2)
            d2.add_(a_sq).clamp_(min=0.0)
            yield r0, c0, d2


def _diagonal(r0: int, c0: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Block indices ``(i, j)`` with ``r0 + i == c0 + j`` (the pairs of a point with itself)."""
    lo, hi = max(r0, c0), min(r0 + shape[0], c0 + shape[1])
    idx = torch.arange(lo, max(lo, hi))
    return idx - r0, idx - c0


@dataclass
class _KernelSums:
    """Row sums, column sums and the sum of squares of one kernel matrix (diagonal excluded
    when it pairs a sample with itself)."""

    rows: np.ndarray
    cols: np.ndarray
    total: float
    squares: float


#: A kernel of squared distances: returns k(d2) for a block ``d2`` in a tensor of its own
#: (it must not write into ``d2``, which the next kernel of the same pass reads).
Kernel = Callable[[torch.Tensor], torch.Tensor]


def _kernel_sums(A: torch.Tensor, B: torch.Tensor, kernels: list[Kernel], *,
                 same: bool) -> list[_KernelSums]:
    """:class:`_KernelSums` of each kernel, all from one pass over the distance blocks."""
    rows = [torch.zeros(A.shape[0], dtype=torch.float64) for _ in kernels]
    cols = [torch.zeros(B.shape[0], dtype=torch.float64) for _ in kernels]
    squares = [torch.zeros((), dtype=torch.float64) for _ in kernels]
    for r0, c0, d2 in _sq_dist_blocks(A, B):
        for j, kernel in enumerate(kernels):
            kb = kernel(d2)
            if same:
                kb[_diagonal(r0, c0, tuple(kb.shape))] = 0.0
            rows[j][r0:r0 + kb.shape[0]] += kb.sum(dim=1)
            cols[j][c0:c0 + kb.shape[1]] += kb.sum(dim=0)
            flat = kb.reshape(-1)
            squares[j] += torch.dot(flat, flat)
    return [_KernelSums(r.numpy(), c.numpy(), float(r.sum()), float(q))
            for r, c, q in zip(rows, cols, squares, strict=True)]


@dataclass
class _TwoSampleU:
    """``U_XX + U_YY - 2 U_XY`` for a kernel, the three terms, and the statistic's SE."""

    value: float
    se: float
    u_xx: float
    u_yy: float
    u_xy: float


def _two_sample_u(x: torch.Tensor, y: torch.Tensor, kernels: list[Kernel]) -> list[_TwoSampleU]:
    """For each kernel k, the unbiased two-sample statistic ``U_XX + U_YY - 2 U_XY``, where
    ``U_XX = mean_{i != j} k(x_i, x_j)``, ``U_YY`` likewise and ``U_XY = mean_{i,j} k(x_i, y_j)``,
    with the standard error of its Hoeffding decomposition (see :func:`mmd2`). The kernels
    share one pass over the squared distances."""
    return [_u_statistic(x.shape[0], y.shape[0], *sums) for sums in zip(
        _kernel_sums(x, x, kernels, same=True), _kernel_sums(y, y, kernels, same=True),
        _kernel_sums(x, y, kernels, same=False), strict=True)]


def _u_statistic(n: int, m: int, sxx: _KernelSums, syy: _KernelSums,
                 sxy: _KernelSums) -> _TwoSampleU:
    u_xx = sxx.total / (n * (n - 1))
    u_yy = syy.total / (m * (m - 1))
    u_xy = sxy.total / (n * m)
    value = u_xx + u_yy - 2.0 * u_xy
    # leave-one-out row means: estimates of g(x) = E k(x, X'), E k(x, Y), ...
    g_xx, g_xy = sxx.rows / (n - 1), sxy.rows / m
    g_yy, g_yx = syy.rows / (m - 1), sxy.cols / n
    first = (4.0 * np.var(g_xx - g_xy, ddof=1) / n) + (4.0 * np.var(g_yy - g_yx, ddof=1) / m)
    # second moments of the doubly centred kernels, E k~^2 = E k^2 - E a^2 - E b^2 + theta^2
    e_xx = max(0.0, sxx.squares / (n * (n - 1)) - 2.0 * np.mean(g_xx ** 2) + u_xx ** 2)
    e_yy = max(0.0, syy.squares / (m * (m - 1)) - 2.0 * np.mean(g_yy ** 2) + u_yy ** 2)
    e_xy = max(0.0, sxy.squares / (n * m) - np.mean(g_xy ** 2) - np.mean(g_yx ** 2)
               + u_xy ** 2)
    second = 2.0 * e_xx / (n * (n - 1)) + 2.0 * e_yy / (m * (m - 1)) + 4.0 * e_xy / (n * m)
    # the plug-in first-order term also carries the row means' own noise, which adds twice
    # the second-order term; remove one copy, and never go below the second-order term (the
    # exact variance under the null, a lower bound otherwise)
    var = max(first - second, second)
    return _TwoSampleU(value, math.sqrt(var), u_xx, u_yy, u_xy)


# --------------------------------------------------------------------------------------------
# kernel statistics


def median_heuristic(X: np.ndarray, Y: np.ndarray, *, seed: int = 0) -> float:
    """Median Euclidean distance between distinct points of the pooled sample ``X, Y``.

    At most 1000 pooled points are used, a subsample drawn without replacement with
    ``np.random.default_rng(seed)`` when there are more. Zero distances (ties) are dropped
    when they are the majority; 1.0 is returned when every point is the same.

    Example:
        >>> median_heuristic(np.array([[0.0], [1.0]]), np.array([[3.0]]))  # 1, 2, 3
        2.0
    """
    x, y = _pair(X, Y)
    z = np.concatenate([x, y])
    if z.shape[0] > _MEDIAN_SUBSAMPLE:
        rng = np.random.default_rng(seed)
        z = z[np.sort(rng.choice(z.shape[0], _MEDIAN_SUBSAMPLE, replace=False))]
    if z.shape[0] < 2:
        return 1.0
    dist = pdist(z)
    med = float(np.median(dist))
    if med <= 0.0:
        positive = dist[dist > 0.0]
        med = float(np.median(positive)) if positive.size else 1.0
    return med


def mmd2(X: np.ndarray, Y: np.ndarray, *, bandwidths: Iterable[float] | None = None,
         seed: int = 0) -> SampleScore:
    """Unbiased squared maximum mean discrepancy MMD^2_u between samples ``X`` and ``Y``.

    ``MMD^2_u = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j)``
    (Gretton et al. 2012, eq. 3), with ``k`` the *mean* of the RBF kernels
    ``exp(-||a - b||^2 / (2 h^2))`` over the bandwidths h, so ``k(a, a) = 1``. By default the
    bandwidths are 0.5, 1 and 2 times the median heuristic (:func:`median_heuristic`, seeded
    by ``seed``); ``bandwidths`` gives them explicitly instead. The estimate is unbiased, so
    it is negative about half the time when ``X`` and ``Y`` share a distribution.

    Standard error: from the Hoeffding decomposition of the two-sample U-statistic (Serfling
    1980, ch. 5), ``Var = 4 zeta_X / n + 4 zeta_Y / m + second-order terms`` where
    ``zeta_X = Var[E k(x, X') - E k(x, Y)]``. zeta is estimated from the variance of the
    leave-one-out kernel row means, whose own noise is removed with a plug-in estimate of
    the second-order (degenerate) terms ``2 E k~_XX^2 / (n(n-1)) + 2 E k~_YY^2 / (m(m-1))
    + 4 E k~_XY^2 / (nm)``, k~ the doubly centred kernel, which are then added back. The
    variance is never taken below that second-order term, its exact value when ``X`` and
    ``Y`` share a distribution (the first-order term vanishes); so under no difference,
    where that floor binds, the SE errs on the large side. ``tests/metrics/
    test_samples.py`` holds it against the spread of MMD^2_u over simulated replicates.
    Computed in the same blocked pass as the value; the bandwidth's own randomness is not
    included.

    ``extra``: ``bandwidths`` (list), ``median_distance`` (None when given explicitly).

    References:
        A. Gretton, K. M. Borgwardt, M. J. Rasch, B. Schoelkopf, A. Smola, "A kernel
        two-sample test", JMLR 13, 2012; R. J. Serfling, *Approximation Theorems of
        Mathematical Statistics*, Wiley 1980; D. J. Sutherland et al., "Generative models
        and model criticism via optimized maximum mean discrepancy", ICLR 2017 (variance).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> Y = rng.normal(size=(300, 2))
        >>> same, shifted = mmd2(rng.normal(size=(300, 2)), Y), mmd2(Y + [1.0, 0.0], Y)
        >>> abs(same.value) < 3 * same.se, shifted.value > 5 * shifted.se
        (True, True)
    """
    x, y = _pair(X, Y)
    _need_rows(x, "X", 2, "mmd2")
    _need_rows(y, "Y", 2, "mmd2")
    hs, median = _mmd_bandwidths(x, y, bandwidths, seed)
    xt, yt = _centred(x, y)
    (u,) = _two_sample_u(xt, yt, [_rbf_mean_kernel(hs)])
    return SampleScore(u.value, u.se, {"bandwidths": hs, "median_distance": median})


def _mmd_bandwidths(x: np.ndarray, y: np.ndarray, bandwidths: Iterable[float] | None,
                    seed: int) -> tuple[list[float], float | None]:
    """:func:`mmd2`'s bandwidths and the median distance they came from (None if given)."""
    if bandwidths is None:
        median = median_heuristic(x, y, seed=seed)
        return [median * c for c in MMD_BANDWIDTH_MULTIPLES], median
    hs = [float(h) for h in bandwidths]
    if not hs or not all(math.isfinite(h) and h > 0 for h in hs):
        raise ValueError(f"mmd2: bandwidths must be finite and > 0; got {hs}")
    return hs, None


class _Scratch:
    """Reusable float64 buffers shaped like the block at hand."""

    def __init__(self) -> None:
        self._flat: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, like: torch.Tensor) -> torch.Tensor:
        buf = self._flat.get(name)
        if buf is None or buf.numel() < like.numel():
            buf = self._flat[name] = torch.empty(like.numel(), dtype=torch.float64)
        return buf[:like.numel()].view_as(like)


def _rbf_mean_kernel(hs: list[float]) -> Kernel:
    """The mean of the RBF kernels ``exp(-d2 / (2 h^2))`` over ``hs``."""
    scales = [-0.5 / (h * h) for h in hs]
    squarings = _squarings(scales)
    scratch = _Scratch()

    def kernel(d2: torch.Tensor) -> torch.Tensor:
        acc = scratch("acc", d2)
        if len(scales) == 1:
            return torch.mul(d2, scales[0], out=acc).exp_()
        tmp = scratch("tmp", d2)
        if squarings is not None:
            # one exp at the widest bandwidth; each narrower kernel by repeated squaring
            # (exp(4 a) = exp(a)^4: each squaring adds about one rounding, ~1e-15 in all,
            # where an exp costs several products)
            torch.mul(d2, max(scales), out=tmp).exp_()
            acc.copy_(tmp)
            for times in squarings:
                for _ in range(times):
                    tmp.mul_(tmp)
                acc.add_(tmp)
            return acc.div_(len(scales))
        torch.mul(d2, scales[0], out=acc).exp_()
        for s in scales[1:]:
            acc.add_(torch.mul(d2, s, out=tmp).exp_())
        return acc.div_(len(scales))

    return kernel


def _distance_kernel() -> Kernel:
    """The energy distance's kernel ``-|a - b|``."""
    scratch = _Scratch()
    return lambda d2: torch.sqrt(d2, out=scratch("dist", d2)).neg_()


def _squarings(scales: list[float]) -> list[int] | None:
    """Where every kernel scale is the widest one's times a power of 4 (bandwidths a
    power of 2 apart, as the default 0.5, 1, 2 times the median), the squarings that take
    each kernel to the next narrower one, widest first (e.g. ``[2, 2]`` for ratios 4 and
    16); else None.

    Example:
        >>> _squarings([-2.0, -0.5, -0.125]), _squarings([-1.0, -0.3])
        ([2, 2], None)
    """
    order = sorted(scales, reverse=True)  # widest (scale nearest 0) first
    steps: list[int] = []
    for prev, cur in zip(order, order[1:], strict=False):
        ratio = cur / prev
        power = round(math.log(ratio, 4.0)) if ratio >= 1.0 else -1
        if power < 0 or ratio != 4.0 ** power:
            return None
        steps.append(2 * power)
    return steps


def energy_distance(X: np.ndarray, Y: np.ndarray, *, unbiased: bool = True) -> SampleScore:
    """The squared energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Euclidean norms).

    Convention: this is the *squared* form, the quantity Szekely & Rizzo call the energy
    distance, equal to MMD^2 with the distance-induced kernel ``k(a, b) = -|a - b|``; zero
    iff the distributions are equal. With ``unbiased=True`` (default) the within-sample means
    exclude the zero self-distances (U-statistic: unbiased, about 0 +- SE for equal
    distributions, can be negative). With ``unbiased=False`` it is the V-statistic, the
    energy distance between the two empirical distributions (always >= 0, biased upward by
    about ``E|X - X'| / n + E|Y - Y'| / m``); in 1-D its square root is what
    ``scipy.stats.energy_distance`` returns. The standard error is the U-statistic's,
    computed as for :func:`mmd2`.

    References:
        G. J. Szekely, M. L. Rizzo, "Energy statistics: A class of statistics based on
        distances", Journal of Statistical Planning and Inference 143(8), 2013.

    Example:
        >>> from scipy.stats import energy_distance as scipy_energy
        >>> x, y = np.array([0.0, 1.0, 3.0]), np.array([1.0, 2.0])
        >>> v = energy_distance(x, y, unbiased=False).value
        >>> bool(abs(v ** 0.5 - scipy_energy(x, y)) < 1e-12)
        True
    """
    x, y = _pair(X, Y)
    _need_rows(x, "X", 2, "energy_distance")
    _need_rows(y, "Y", 2, "energy_distance")
    xt, yt = _centred(x, y)
    (u,) = _two_sample_u(xt, yt, [_distance_kernel()])
    return _energy_score(u, x.shape[0], y.shape[0], unbiased)


def _energy_score(u: _TwoSampleU, n: int, m: int, unbiased: bool) -> SampleScore:
    """:func:`energy_distance`'s score from its kernel's U-statistic."""
    if unbiased:
        value = u.value
    else:
        # self-distances are 0: the full means are (n-1)/n, (m-1)/m of the off-diagonal ones
        value = (n - 1) / n * u.u_xx + (m - 1) / m * u.u_yy - 2.0 * u.u_xy
    # in the kernel k = -|a - b| the U terms are minus the mean distances
    extra = {"mean_xy": -u.u_xy, "mean_xx": -u.u_xx, "mean_yy": -u.u_yy, "unbiased": unbiased}
    return SampleScore(float(value), u.se, extra)


@_computes("mmd2", "energy_distance", seeded=True,
           unit_extras=("bandwidths", "median_distance", "mean_xy", "mean_xx", "mean_yy"))
def _kernel_statistics(X: np.ndarray, Y: np.ndarray, *, seed: int = 0
                       ) -> dict[str, SampleScore]:
    """:func:`mmd2` and :func:`energy_distance` (their defaults) from one pass over the
    squared distances, as :func:`sample_metrics` computes them: the same values as the two
    calls (to rounding: the same operations on the same blocks), with one distance
    computation instead of two."""
    x, y = _pair(X, Y)
    _need_rows(x, "X", 2, "mmd2 and energy_distance")
    _need_rows(y, "Y", 2, "mmd2 and energy_distance")
    hs, median = _mmd_bandwidths(x, y, None, seed)
    xt, yt = _centred(x, y)
    mmd, energy = _two_sample_u(xt, yt, [_rbf_mean_kernel(hs), _distance_kernel()])
    return {"mmd2": SampleScore(mmd.value, mmd.se, {"bandwidths": hs, "median_distance": median}),
            "energy_distance": _energy_score(energy, x.shape[0], y.shape[0], True)}


# --------------------------------------------------------------------------------------------
# sliced Wasserstein


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


# --------------------------------------------------------------------------------------------
# classifier two-sample test


#: The classifier of :func:`c2st`: one network per fold, all folds trained at once.
C2ST_CLASSIFIER = ("MLP 64-64 ReLU per fold (PyTorch float32, Glorot init, Adam lr 2e-3, "
                   "batches of 512 or a quarter of the fold, early stopping on the loss of "
                   "10% of the fold after 20 epochs, patience 5, at most 200 epochs), "
                   "features standardized on the training fold")
_C2ST_HIDDEN = 64
_C2ST_BATCH = 512
_C2ST_LR = 2e-3
_C2ST_MAX_EPOCHS = 200
_C2ST_PATIENCE = 5
_C2ST_MIN_STEPS = 4
_C2ST_MIN_EPOCHS = 20
_C2ST_VAL_FRACTION = 0.1


def _padded(index_lists: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged per-fold row indices as a (K, L) tensor (padded with each list's first index)
    and a (K, L) mask of the real entries."""
    width = max(len(ix) for ix in index_lists)
    idx = torch.zeros((len(index_lists), width), dtype=torch.long)
    mask = torch.zeros((len(index_lists), width), dtype=torch.bool)
    for k, ix in enumerate(index_lists):
        idx[k, :len(ix)] = torch.from_numpy(np.asarray(ix, dtype=np.int64))
        idx[k, len(ix):] = int(ix[0])
        mask[k, :len(ix)] = True
    return idx, mask


class _FoldMLPs:
    """K two-hidden-layer ReLU classifiers, one per cross-validation fold, held as stacked
    weights so that one batched product trains all K at once (each network sees only its
    own fold's rows: its loss, gradients and Adam moments are its own)."""

    def __init__(self, k: int, d: int, gen: torch.Generator) -> None:
        sizes = [(d, _C2ST_HIDDEN), (_C2ST_HIDDEN, _C2ST_HIDDEN), (_C2ST_HIDDEN, 1)]
        self.params: list[torch.Tensor] = []
        for fan_in, fan_out in sizes:  # Glorot uniform, as scikit-learn's MLP for ReLU
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            for shape in ((k, fan_in, fan_out), (k, 1, fan_out)):
                p = (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound
                self.params.append(p.requires_grad_())

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, d) rows -> (K, B) logits, network k on rows k."""
        w1, b1, w2, b2, w3, b3 = self.params
        h = torch.relu(torch.baddbmm(b1, x, w1))
        h = torch.relu(torch.baddbmm(b2, h, w2))
        # the output layer (one unit) as a product and a sum, not a batched product: a
        # (B, 64) x (64, 1) product takes PyTorch's slow path, nearly as long as the
        # 64 x 64 layer forward and backward
        return (h * w3.transpose(1, 2)).sum(dim=-1) + b3.squeeze(-1)

    def snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]


def _fold_losses(net: _FoldMLPs, z: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss of each network on its own rows ``idx[k]`` (masked), shape (K,)."""
    logits = net.logits(z[torch.arange(idx.shape[0])[:, None], idx])
    loss = F.binary_cross_entropy_with_logits(logits, y[idx], reduction="none")
    return (loss * mask).sum(dim=1) / mask.sum(dim=1)


def _train_fold_mlps(z: torch.Tensor, y: torch.Tensor, fit: list[np.ndarray],
                     val: list[np.ndarray], gen: torch.Generator) -> _FoldMLPs:
    """Adam on minibatches drawn from each fold's ``fit`` rows; each network keeps the
    weights of its best validation loss and stops after ``_C2ST_PATIENCE`` epochs without
    a better one (the scheme of scikit-learn's ``early_stopping``, on the loss)."""
    k = z.shape[0]
    net = _FoldMLPs(k, z.shape[2], gen)
    opt = torch.optim.Adam(net.params, lr=_C2ST_LR, fused=True)  # one kernel per step
    fit_idx, fit_mask = _padded(fit)
    val_idx, val_mask = _padded(val)
    n_fit = fit_mask.sum(dim=1, keepdim=True).double()
    # at least _C2ST_MIN_STEPS updates an epoch, so that small samples are not stopped
    # after a handful of updates
    batch = max(1, min(_C2ST_BATCH, int(n_fit.min()) // _C2ST_MIN_STEPS))
    steps = math.ceil(int(n_fit.max()) / batch)
    rows = torch.arange(k)[:, None]
    best, best_loss = net.snapshot(), torch.full((k,), math.inf)
    active, waited = torch.ones(k, dtype=torch.bool), torch.zeros(k, dtype=torch.long)
    for epoch in range(_C2ST_MAX_EPOCHS):
        for _ in range(steps):
            pick = (torch.rand((k, batch), generator=gen, dtype=torch.float64) * n_fit).long()
            idx = fit_idx[rows, pick]
            # the sum of the networks' mean losses: each network's gradient is its own
            loss = F.binary_cross_entropy_with_logits(net.logits(z[rows, idx]), y[idx],
                                                      reduction="sum") / batch
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            vloss = _fold_losses(net, z, y, val_idx, val_mask)
            better = active & (vloss < best_loss - 1e-4)
            best_loss = torch.where(better, vloss, best_loss)
            for b, p in zip(best, net.params, strict=True):
                b[better] = p.detach()[better]
            waited = torch.where(better, 0, waited + 1)
            active &= (waited < _C2ST_PATIENCE) | (epoch + 1 < _C2ST_MIN_EPOCHS)
        if not active.any():
            break
    with torch.no_grad():
        for p, b in zip(net.params, best, strict=True):
            p.copy_(b)
    return net


@_computes("c2st_accuracy", seeded=True)
def c2st(X: np.ndarray, Y: np.ndarray, *, seed: int = 0, folds: int = 5) -> SampleScore:
    """Classifier two-sample test: cross-validated accuracy of telling ``X`` from ``Y``.

    The larger sample is subsampled (without replacement, ``np.random.default_rng(seed)``)
    to the size of the smaller, so chance is exactly 0.5. Rows are split by
    ``StratifiedKFold(folds, shuffle=True, random_state=seed)``; for each fold a classifier
    (:data:`C2ST_CLASSIFIER`: two hidden layers of 64 ReLU units, logistic loss, Adam,
    early stopping on a stratified 10% of the training fold, features standardized by the
    training fold) is trained and scored on the held-out fold. The value is the mean
    held-out accuracy: 0.5 when the classifier cannot tell the samples apart (it may fall a
    little below), up to 1 when it always can. The SE is the spread of the ``folds``
    accuracies over sqrt(folds) (it ignores the folds' dependence through shared training
    data; the binomial ``sqrt(a (1 - a) / (2 n))`` is in ``extra``).

    Why not scikit-learn's ``MLPClassifier`` (the same network, fitted fold by fold,
    with batches of 200 and a patience of 10 epochs on the validation accuracy): it
    would be most of the cost of all sample metrics. Here the ``folds`` networks are stacked
    and trained by one batched product per step, in float32 on the calling thread's PyTorch,
    with larger batches and early stopping on the smoother validation loss (never before
    20 epochs: a radial difference, a change of scale or of tails, is learnt only after
    a plateau at chance), so it stops sooner; ``tests/metrics/test_samples.py`` holds it
    to that classifier's power on close pairs of distributions. Minibatches are drawn
    with replacement from each fold's rows by a ``torch.Generator`` seeded with ``seed``.

    ``extra``: ``fold_accuracies``, ``n_per_class``, ``binomial_se``, ``classifier``.

    References:
        D. Lopez-Paz, M. Oquab, "Revisiting classifier two-sample tests", ICLR 2017;
        X. Glorot, Y. Bengio, "Understanding the difficulty of training deep feedforward
        neural networks", AISTATS 2010; D. P. Kingma, J. Ba, "Adam", ICLR 2015.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> far = c2st(rng.normal(size=(200, 2)) + [4.0, 0.0], rng.normal(size=(300, 2)))
        >>> far.value > 0.9, far.extra["n_per_class"]
        (True, 200)
    """
    x, y = _pair(X, Y)
    folds = int(folds)
    if folds < 2:
        raise ValueError(f"c2st: folds must be >= 2; got {folds}")
    n = min(x.shape[0], y.shape[0])
    if n < folds:
        raise ValueError(f"c2st: needs at least folds={folds} rows in each sample; got {n}")
    rng = np.random.default_rng(seed)
    if x.shape[0] > n:
        x = x[np.sort(rng.choice(x.shape[0], n, replace=False))]
    if y.shape[0] > n:
        y = y[np.sort(rng.choice(y.shape[0], n, replace=False))]
    z = np.concatenate([x, y])
    labels = np.concatenate([np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)])
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fit, val, test, scaled = [], [], [], []
    for train_idx, test_idx in splitter.split(z, labels):
        n_val = max(2, round(_C2ST_VAL_FRACTION * len(train_idx)))  # one row per class
        f, v = train_test_split(train_idx, test_size=n_val, random_state=seed,
                                stratify=labels[train_idx])
        fit.append(f)
        val.append(v)
        test.append(test_idx)
        centre, scale = z[train_idx].mean(axis=0), z[train_idx].std(axis=0)
        scaled.append((z - centre) / np.where(scale > 0.0, scale, 1.0))
    zt = torch.from_numpy(np.stack(scaled).astype(np.float32))
    yt = torch.from_numpy(labels.astype(np.float32))
    gen = torch.Generator().manual_seed(seed)
    net = _train_fold_mlps(zt, yt, fit, val, gen)
    test_idx, test_mask = _padded(test)
    with torch.no_grad():
        logits = net.logits(zt[torch.arange(folds)[:, None], test_idx])
        right = ((logits > 0).float() == yt[test_idx]) & test_mask
    accuracies = (right.sum(dim=1) / test_mask.sum(dim=1)).tolist()
    value, se = mean_se(np.asarray(accuracies))
    binomial = math.sqrt(max(value * (1.0 - value), 0.0) / (2 * n))
    return SampleScore(value, se, {"fold_accuracies": accuracies, "n_per_class": n,
                                   "binomial_se": binomial, "classifier": C2ST_CLASSIFIER})


# --------------------------------------------------------------------------------------------
# k-NN metrics


def _kth_neighbour_distance(A: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of ``A`` to its k-th nearest *other* row."""
    with sklearn.config_context(working_memory=_WORKING_MEMORY_MIB):
        dist, _ = NearestNeighbors(n_neighbors=k).fit(A).kneighbors()
    return dist[:, -1]


@_computes("precision", "recall", "density", "coverage")
def prdc(X: np.ndarray, Y: np.ndarray, *, k: int = 5) -> dict[str, SampleScore]:
    """Precision, recall, density and coverage of fake samples ``X`` against real data ``Y``.

    Each real point ``y_j`` gets a ball of radius ``r_j`` = distance to its k-th nearest
    other real point, each fake point ``x_i`` one of radius ``s_i`` likewise among the fakes
    (Euclidean, strict inequalities as in the authors' code):

    - precision = fraction of fakes inside at least one real ball (fidelity);
    - recall = fraction of reals inside at least one fake ball (diversity);
    - density = ``(1 / (k n)) sum_i #{j: |x_i - y_j| < r_j}`` (ideal 1, may exceed 1);
    - coverage = fraction of real balls that contain at least one fake.

    For ``X`` and ``Y`` from one continuous distribution, ``E[density] = 1`` and
    ``E[coverage] = 1 - prod_{i=1..k} (m - i) / (n + m - i)`` (~ 1 - 2^-k = 0.969 for k = 5
    and n = m; Naeem et al. 2020); precision and recall stay below 1 at finite k and fall
    with the dimension. Each SE is the plain ``mean_se`` of the per-point indicators
    (counts for density): it ignores the dependence through the shared radii.

    One blocked pass over the fake x real distances gives all four; the radii come from
    sklearn ``NearestNeighbors``.

    References:
        M. F. Naeem, S. J. Oh, Y. Uh, Y. Choi, J. Yoo, "Reliable fidelity and diversity
        metrics for generative models", ICML 2020; T. Kynkaanniemi, T. Karras, S. Laine,
        J. Lehtinen, T. Aila, "Improved precision and recall metric for assessing
        generative models", NeurIPS 2019.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> Y = rng.normal(size=(500, 2))
        >>> s = prdc(Y * [1.0, 0.0], Y)     # samples collapsed onto a line
        >>> s["precision"].value > 0.9, s["recall"].value < 0.3
        (True, True)
    """
    x, y = _pair(X, Y)
    k = int(k)
    if k < 1:
        raise ValueError(f"prdc: k must be >= 1; got {k}")
    _need_rows(x, "X", k + 1, "prdc")
    _need_rows(y, "Y", k + 1, "prdc")
    r_real2 = torch.from_numpy(_kth_neighbour_distance(y, k) ** 2)
    r_fake2 = torch.from_numpy(_kth_neighbour_distance(x, k) ** 2)
    n, m = x.shape[0], y.shape[0]
    in_real = torch.zeros(n, dtype=torch.bool)       # precision: fake i in some real ball
    counts = torch.zeros(n, dtype=torch.float64)     # density: how many real balls
    covered = torch.zeros(m, dtype=torch.bool)       # coverage: real ball j holds a fake
    in_fake = torch.zeros(m, dtype=torch.bool)       # recall: real j in some fake ball
    xt, yt = _centred(x, y)
    for r0, c0, d2 in _sq_dist_blocks(xt, yt):
        h, w = d2.shape
        inside = d2 < r_real2[c0:c0 + w].unsqueeze(0)
        in_real[r0:r0 + h] |= inside.any(dim=1)
        counts[r0:r0 + h] += inside.sum(dim=1)
        covered[c0:c0 + w] |= inside.any(dim=0)
        in_fake[c0:c0 + w] |= (d2 < r_fake2[r0:r0 + h].unsqueeze(1)).any(dim=0)
    extra = {"k": k}
    out = {}
    for name, per_point in (("precision", in_real.double()), ("recall", in_fake.double()),
                            ("density", counts / k), ("coverage", covered.double())):
        value, se = mean_se(per_point.numpy())
        out[name] = SampleScore(value, se, dict(extra))
    return out


@_computes("memorization_ratio", seeded=True, needs_train=True,
           unit_extras=("median_sample_distance", "median_heldout_distance"))
def memorization_ratio(X: np.ndarray, train: np.ndarray, Y: np.ndarray, *, seed: int = 0,
                       n_boot: int = 200) -> SampleScore:
    """Median distance from each sample in ``X`` to its nearest ``train`` point, divided by
    the median distance from each held-out point in ``Y`` to its nearest ``train`` point.

    Near 0: samples sit on training points (copying); about 1: samples are as far from the
    training set as fresh data are (``Y`` must not overlap ``train``); above 1: samples are
    further (off the data). The median (not the mean) keeps a few far-off samples from
    hiding many copies. Nearest neighbours are exact (sklearn ``NearestNeighbors``).

    Standard error: bootstrap over ``n_boot`` resamples of the two sets of nearest-neighbour
    distances (``np.random.default_rng(seed)``), the training set held fixed.

    ``extra``: ``median_sample_distance``, ``median_heldout_distance`` and
    ``frac_below_heldout_q05``, the fraction of samples closer to the training set than 95%
    of held-out points are (about 0.05 for fresh samples; the share of copies otherwise).

    References:
        The distance-to-training-set check of, e.g., C. Meehan, K. Chaudhuri, S. Dasgupta,
        "A non-parametric test to detect data-copying in generative models", AISTATS 2020
        (this ratio is a simpler, un-tested summary).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> train, Y = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
        >>> memorization_ratio(train[:100], train, Y).value
        0.0
    """
    x = _as_points(X, "X")
    tr = _as_points(train, "train", x.shape[1])
    y = _as_points(Y, "Y", x.shape[1])
    with sklearn.config_context(working_memory=_WORKING_MEMORY_MIB):
        nn = NearestNeighbors(n_neighbors=1).fit(tr)
        dx = nn.kneighbors(x)[0][:, 0]
        dy = nn.kneighbors(y)[0][:, 0]
    med_x, med_y = float(np.median(dx)), float(np.median(dy))
    if med_y <= 0.0:
        raise ValueError("memorization_ratio: most held-out points coincide with training "
                         "points; Y must be data that was not trained on")
    rng = np.random.default_rng(seed)
    boot = np.empty(int(n_boot), dtype=np.float64)
    for b in range(boot.size):
        num = np.median(dx[rng.integers(0, dx.size, dx.size)])
        den = np.median(dy[rng.integers(0, dy.size, dy.size)])
        boot[b] = num / den if den > 0.0 else np.nan
    boot = boot[np.isfinite(boot)]
    se = float(np.std(boot, ddof=1)) if boot.size > 1 else None
    extra = {"median_sample_distance": med_x, "median_heldout_distance": med_y,
             "frac_below_heldout_q05": float(np.mean(dx < np.quantile(dy, 0.05)))}
    return SampleScore(med_x / med_y, se, extra)


# --------------------------------------------------------------------------------------------
# Frechet distance


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


# --------------------------------------------------------------------------------------------
# the all-in-one entry point


def common_scale(Y: np.ndarray) -> float:
    """The power of two by which :func:`sample_metrics` divides every sample it compares
    with the reference data ``Y``: 1.0 when ``Y``'s typical spread is of ordinary magnitude
    (see :func:`~densbench.estimators.base.scale_of`), else the power of two just above
    it. The spread is the median absolute deviation from the column medians over all
    entries (one far-off row does not set it), taken on halved values so that no step
    overflows anywhere in the float64 range; where most entries equal their column's
    median, the median of the other deviations.

    Dividing by a power of two changes only exponents, so every metric is computed as at
    ordinary scale, where squares and kernels neither overflow nor underflow.

    Example:
        >>> Y = np.random.default_rng(0).normal(size=(100, 2))
        >>> common_scale(Y), common_scale(Y * 1e155) > 1e154, common_scale(Y * 1e-300) < 1e-299
        (1.0, True, True)
    """
    from densbench.estimators.base import scale_of

    half = 0.5 * Y
    dev = np.abs(half - np.quantile(half, 0.5, axis=0, method="lower"))
    positive = dev[dev > 0.0]
    if positive.size == 0:
        return 1.0
    return scale_of(float(np.quantile(positive, 0.5, method="lower")))


#: Largest binary exponent of the values (rescaled, in :func:`sample_metrics`) that the
#: pairwise metrics take: their squares summed over many dimensions and pairs stay finite.
_SAFE_EXPONENT = 480


def _check_range(x: np.ndarray, y: np.ndarray, scale: float) -> None:
    """A ``ValueError`` saying so when samples ``x`` and data ``y`` (divided by ``scale``)
    are too far apart for their squared distances to be finite in float64."""
    top = max(float(np.max(np.abs(x))), float(np.max(np.abs(y))))
    if top >= 2.0 ** _SAFE_EXPONENT:
        raise ValueError(f"the samples and the data are too far apart to compare in float64 "
                         f"(values up to {top * scale:.3g} beside the data's typical spread; "
                         f"their squared distances overflow)")


def failed(error: Exception) -> SampleScore:
    """The score of a metric that raised ``error`` (call it in the ``except`` block): a NaN
    value, and the error and its traceback in ``extra``, so that the metric's failure is
    recorded as that metric's and the others stand."""
    return SampleScore(math.nan, None, {"error": f"{type(error).__name__}: {error}",
                                        "traceback": traceback.format_exc(limit=8)})


def _in_data_units(score: SampleScore, name: str, scale: float) -> SampleScore:
    """``score`` of the metric ``name`` of data divided by ``scale`` as the score of the
    data themselves."""
    if scale == 1.0 or "error" in score.extra:
        return score
    extra = dict(score.extra)
    for key in _HOW[name].unit_extras:
        value = extra.get(key)
        if isinstance(value, list):
            extra[key] = [v * scale for v in value]
        elif value is not None:
            extra[key] = value * scale
    if SAMPLE_METRICS[name].unit != "data units":
        return SampleScore(score.value, score.se, extra)
    return SampleScore(score.value * scale, None if score.se is None else score.se * scale,
                       extra)


def _names(which: Iterable[str] | None, with_train: bool) -> list[str]:
    if which is None:
        return [n for n in SAMPLE_METRICS if with_train or not _HOW[n].needs_train]
    names = list(which)
    unknown = [n for n in names if n not in SAMPLE_METRICS]
    if unknown:
        raise UnknownNameError(f"unknown sample metric {unknown[0]!r}; known: "
                               f"{', '.join(SAMPLE_METRICS)}")
    return names


def sample_metrics(X: np.ndarray, Y: np.ndarray, *, train: np.ndarray | None = None,
                   seed: int = 0, which: Iterable[str] | None = None,
                   keep_going: bool = False) -> dict[str, SampleScore]:
    """Compute the sample metrics named in ``which`` (default: all that apply) for samples
    ``X`` against held-out data ``Y``, each with its default settings and ``seed``.

    ``memorization_ratio`` needs ``train`` (the data the model was fit to): it is skipped
    when ``which`` is None and ``train`` is not given, and an error when asked for by name.
    Metrics computed together are computed once: ``mmd2`` and ``energy_distance`` in one
    pass over the squared distances, ``precision``, ``recall``, ``density`` and
    ``coverage`` from one set of k-NN balls.

    Data at any finite scale: every sample is divided by :func:`common_scale` of ``Y``
    (exactly: a power of two) and the figures in the data's units (energy distance, sliced
    Wasserstein, distances in ``extra``) are multiplied back, so every figure is in its
    stated units; the others do not depend on a common scale.

    ``keep_going``: a metric that raises is returned as :func:`failed` (NaN, with the error)
    and the others are computed; otherwise the error propagates.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> s = sample_metrics(rng.normal(size=(200, 2)), rng.normal(size=(200, 2)),
        ...                    which=["energy_distance", "coverage"])
        >>> list(s), 0.9 < s["coverage"].value <= 1.0
        (['energy_distance', 'coverage'], True)
    """
    names = _names(which, train is not None)
    x, y = _pair(X, Y)
    tr = None if train is None else _as_points(train, "train", x.shape[1])
    scale = common_scale(y)
    if scale != 1.0:
        x, y, tr = x / scale, y / scale, None if tr is None else tr / scale
    try:
        _check_range(x, y, scale)
    except ValueError as exc:
        if not keep_going:
            raise
        return dict.fromkeys(names, failed(exc))
    results: dict[Callable[..., Any], Any] = {}
    out: dict[str, SampleScore] = {}
    for name in names:
        how = _HOW[name]
        if how.needs_train and tr is None:
            raise ValueError(f"sample metric {name!r} needs the training set (train=)")
        if how.fn not in results:
            kwargs: dict[str, Any] = {"seed": seed} if how.seeded else {}
            args = (x, tr, y) if how.needs_train else (x, y)
            try:
                results[how.fn] = how.fn(*args, **kwargs)
            except Exception as exc:
                if not keep_going:
                    raise
                results[how.fn] = failed(exc)
        result = results[how.fn]
        score = result[name] if isinstance(result, dict) else result
        out[name] = _in_data_units(score, name, scale)
    return out


def to_metrics(scores: Mapping[str, SampleScore],
               prefix: str = catalogue.SAMPLES_PREFIX) -> list[Metric]:
    """Result rows (:class:`~densbench.metrics.base.Metric`) for named scores, recorded as
    ``prefix + name`` (:data:`~densbench.metrics.catalogue.SAMPLES_PREFIX` for a model's
    samples, :data:`~densbench.metrics.catalogue.FLOOR_PREFIX` for the floor) in the
    catalogue's units.

    Example:
        >>> to_metrics({"mmd2": SampleScore(0.01, 0.002)})  # doctest: +NORMALIZE_WHITESPACE
        [Metric(metric='samples_mmd2', value=0.01, se=0.002, unit='squared RKHS distance',
                note=None)]
    """
    return [_metric(prefix + key, s) for key, s in scores.items()]


def _metric(name: str, score: SampleScore) -> Metric:
    """A score as a result row; one that failed or is not finite carries a note saying so
    (its value is then recorded as missing)."""
    row = catalogue.metric(name, float(score.value),
                           None if score.se is None else float(score.se))
    if "error" in score.extra:
        return replace(row, note=f"not computed: {score.extra['error']}")
    if not math.isfinite(row.value):
        return replace(row, note=f"not computed: the value is {row.value} in float64 (the "
                                 "samples or the data are too far apart to compare)")
    return row


if set(_HOW) != set(SAMPLE_METRICS):  # a catalogue entry with no function computing it
    raise ImportError("densbench.metrics.samples: no function computes the sample metrics "
                      f"{sorted(set(SAMPLE_METRICS) - set(_HOW))}")
