"""The kernel two-sample statistics: :func:`mmd2` and :func:`energy_distance`, and the
blocked pass over pairwise squared distances they (and :func:`~densbench.metrics.samples.
neighbours.prdc`) share.

Pairwise work is done in blocks: a distance block is at most ``_BLOCK_ROWS x _BLOCK_COLS``
float64 values (512 x 1024 = 4 MiB), and at most four such buffers exist at once (the
squared distances; for a mean of several kernels an accumulator and a scratch buffer; the
distances themselves for the energy distance, computed in the same pass as :func:`mmd2`
by :func:`sample_metrics`; :func:`prdc` adds two boolean masks of a block), whatever n and
m: under 20 MiB, where one n x m float64 matrix would take 490 MiB for n = m = 8000.
Squared distances come from ``||a||^2 + ||b||^2 - 2 a.b`` (one ``addmm``, clamped at >= 0)
after both samples are centred on a common point, in PyTorch float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.distance import pdist

from densbench.metrics.samples.dispatch import _computes
from densbench.metrics.samples.points import SampleScore, _need_rows, _pair

__all__ = ["MMD_BANDWIDTH_MULTIPLES", "energy_distance", "median_heuristic", "mmd2"]


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
