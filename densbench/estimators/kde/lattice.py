"""Gaussian KDE log-densities on a lattice with a certified error bound, for large training
sets in one or two dimensions: high-order interpolation onto a fine lattice, the kernel
sum on the lattice as a separable discrete convolution, and interpolation back at the
queries, with a bound on the error of every query's value computed from the bandwidth and
the data alone.

Why. In 2-D the exact path's cost grows as ``n_query x n_train`` and the tree path
(:mod:`densbench.estimators.kde.tree`) gains little where a query's ball of
``sqrt(2 log(n / tolerance))`` bandwidths holds whole clusters (it sums every term in
it). But the kernel sum is smooth on the bandwidth's scale, so it can be carried by a
lattice of spacing ``delta = GRID_SPACING * h``, as binned estimates (KDEpy's FFT) do.
Binning with linear weights has an error of order ``(delta / h)^2``, which a certified
1e-6 nats would need ~1e-3 h spacings for; local Lagrange interpolation of order
``m = GRID_ORDER`` has an error of order ``(delta / h)^m`` with a known constant, so a
spacing of a tenth of a bandwidth reaches 1e-10 of a kernel's peak.

How, for each dimension's lattice ``g_k = g_0 + k delta`` and ``m`` nodes about a point
(offsets ``-(m/2 - 1) .. m/2`` from the cell that holds it), with Lagrange weights ``L``:

1. each training point x spreads weights ``prod_l L(x_l)`` onto its ``m^d`` nodes:
   ``W_j = sum_i L_j(x_i)`` ("anterpolation"; :func:`numpy.bincount`);
2. ``F_k = sum_j W_j K(g_k - g_j)``: a separable convolution, one banded matrix product
   per axis (PyTorch, under the process's thread count);
3. at a query y, ``F~(y) = sum_k L_k(y) F_k``: the sum's interpolant, whose log is returned.

The bound. For the Gaussian ``k(t) = exp(-t^2 / 2)`` (t in bandwidths), Cramer's inequality
bounds every derivative, ``|k^(m)(t)| <= 1.0865 sqrt(m!) exp(-t^2 / 4)``, so the error of
interpolating ``x -> k(y - x)`` from m nodes spaced ``delta/h`` apart is at most
``A (delta/h)^m exp(-(|t| - r)_+^2 / 4)`` with ``A = 1.0865 max|prod(theta - o)| / sqrt(m!)``
and ``r = m delta / (2 h)`` the nodes' reach (the error formula of polynomial
interpolation: Davis, 1975, theorem 3.1.1). Over d dimensions (tensor interpolation,
Lebesgue constant Lambda per axis) and both interpolations (sources, step 1, and the
query, step 3) the error of a query's value is at most

    C * V(y),   C = d Lambda^(d-1) A (delta/h)^m (1 + Lambda^d) + (rounding terms),
    V(y) = sum_i prod_l exp(-(|y_l - x_il| - 2r)_+^2 / 4),

and ``V`` is bounded from above by counting the training points in coarse cells of half a
bandwidth and convolving the counts with the envelope at the cells' smallest distance
(all terms positive, so that bound is certain up to a rounding factor). Per query the
value's error in nats is then at most ``-log1p(-E / F~)`` with ``E = C V + (truncation)``;
rows where that exceeds the tolerance (queries far from the data, where ``V`` shrinks
more slowly than the sum, or outside the lattice) are left to the caller, which scores
them on the tree path. Rounding is bounded term by term (Higham 2002: a sum of N terms is
within ``gamma_N`` of the sum of their magnitudes; every magnitude here is bounded by
``Lambda^(2d)`` times the envelope) and added to C.

Limits: the lattice holds at most :data:`GRID_MAX_NODES` nodes; data wider than that
many tenths of a bandwidth, or in more than :data:`GRID_MAX_DIM` dimensions, go to the tree
path (``grid_for`` returns None), and so do data whose magnitude is so large against the
bandwidth that the lattice's origin and spacing cannot place them (``ulp(x)`` near h).

References:
    H. Cramer, "Mathematical Methods of Statistics", Princeton University Press 1946 (the
    bound on Hermite functions); P. J. Davis, "Interpolation and Approximation", Dover 1975
    (the interpolation error); N. J. Higham, "Accuracy and Stability of Numerical
    Algorithms", SIAM 2002 (summation error); B. W. Silverman, "Kernel density estimation
    using the fast Fourier transform", Applied Statistics 31, 1982 (binned KDE).

Example:
    >>> import numpy as np
    >>> from densbench.estimators.kde.exact import log_kernel_sums
    >>> X = np.random.default_rng(0).normal(size=(20_000, 2))
    >>> Z = X[:5] + 0.01
    >>> grid = grid_for(X, 0.2)
    >>> got, bound, ok = grid.log_sums(Z)
    >>> exact = log_kernel_sums(Z, X, [0.2])[:, 0]
    >>> bool(ok.all() and np.all(np.abs(got - exact) <= bound) and np.all(bound < 1e-8))
    True
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading

import numpy as np
import torch
from scipy.ndimage import correlate1d

from densbench.parallel import run_workers

__all__ = ["GRID_MAX_DIM", "GRID_MAX_NODES", "GRID_ORDER", "GRID_SPACING",
           "QUERY_MARGIN", "KernelGrid", "grid_for", "interpolation_constants"]

#: Nodes per axis of each interpolation (even): the error falls as spacing^GRID_ORDER.
GRID_ORDER = 10
#: Lattice spacing in bandwidths: with GRID_ORDER 10 one interpolation's error is at most
#: 5e-11 of a kernel's peak (times the envelope; see the module docstring).
GRID_SPACING = 0.1
#: The lattice extends this many bandwidths beyond the training points' bounding box, so
#: that queries that far out are interpolated too (farther ones go to the tree path).
QUERY_MARGIN = 4.0
#: Most lattice nodes in all (8 float64 values each, a few arrays of them).
GRID_MAX_NODES = 1 << 22
#: Axes up to this many nodes are convolved by a banded matrix product (its size^2 values
#: held at once, on PyTorch's threads); longer ones by a direct 1-D correlation.
_DENSE_AXIS = 4096
#: Most dimensions: each point touches GRID_ORDER^d nodes, and in 3-D a lattice a tenth
#: of a bandwidth fine exceeds GRID_MAX_NODES unless the data span under ~16 bandwidths.
GRID_MAX_DIM = 2
#: Cramer's constant, rounded up: |He_n(t)| exp(-t^2 / 4) <= 1.086435 sqrt(n!) for all t.
_CRAMER = 1.0865
#: Coarse cells of the envelope's count (bandwidths): wider cells cost a looser bound.
_COARSE = 0.5
#: Convolution taps are cut where the kernel (the envelope) is below exp(-_CUT_NATS) of
#: its peak times the number of points; what is cut is bounded and added to the bound.
_CUT_NATS = 80.0
_EPS = float(np.finfo(np.float64).eps)
#: Points (or queries) per chunk of the spreading and interpolation steps: bounds their
#: index and weight arrays to chunk x GRID_ORDER^d values.
_CHUNK = 32_768
#: Fewest points per chunk when chunks are shared among threads.
_MIN_CHUNK = 2_048


def _gamma(n: float) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)`` with u the unit roundoff (eps / 2)."""
    nu = n * _EPS / 2.0
    return nu / (1.0 - nu)


def _offsets(m: int) -> np.ndarray:
    return np.arange(-(m // 2 - 1), m // 2 + 1, dtype=np.float64)


@functools.lru_cache(maxsize=8)
def _barycentric(m: int) -> np.ndarray:
    """``1 / prod_{i != j} (o_j - o_i)`` for the nodes at :func:`_offsets`."""
    o = _offsets(m)
    return np.array([1.0 / np.prod([o[j] - o[i] for i in range(m) if i != j])
                     for j in range(m)])


def _lagrange(theta: np.ndarray, m: int) -> np.ndarray:
    """Lagrange weights (len(theta), m) of the nodes at :func:`_offsets` for positions
    ``theta`` in [0, 1): ``L_j = c_j prod_{i != j} (theta - o_i)``, formed as
    ``c_j omega(theta) / (theta - o_j)`` (each weight within ``m + 2`` roundings); a
    position on a node (theta = 0, or 1 in :func:`interpolation_constants`) gets that
    node's weight 1 exactly."""
    o = _offsets(m)
    diff = theta[:, None] - o[None, :]
    hit = diff == 0.0
    on_node = hit.any(axis=1)
    diff[on_node] = 1.0  # (any nonzero: these rows are set below)
    omega = diff[:, 0].copy()
    for j in range(1, m):  # (faster than np.prod along a short axis)
        omega *= diff[:, j]
    out = np.divide(omega[:, None], diff, out=diff)
    out *= _barycentric(m)
    out[on_node] = hit[on_node]
    return out


@functools.lru_cache(maxsize=8)
def interpolation_constants(m: int) -> tuple[float, float]:
    """``(P, Lambda)`` for m-node interpolation inside the middle cell, certified upward:
    ``P`` bounds ``|prod_j (theta - o_j)|`` and ``Lambda`` (the Lebesgue constant) bounds
    ``sum_j |L_j(theta)|`` over theta in [0, 1]. Each is the largest value on 200,001
    evenly spaced thetas plus half a spacing times a bound on its slope (the slope of a
    product of m factors, each at most ``max(|o|, |1 - o|)`` on [0, 1], is at most the sum
    over factors of the product of the others).

    Example:
        >>> p, lam = interpolation_constants(10)
        >>> round(p, 1), round(lam, 3)  # ((9!! / 2^5)^2 = 872.2 mid-cell)
        (872.3, 1.563)
    """
    o = _offsets(m)
    theta = np.linspace(0.0, 1.0, 200_001)
    step = theta[1] - theta[0]
    reach = np.maximum(np.abs(o), np.abs(1.0 - o))
    prod_all = float(np.prod(reach))
    slope_p = sum(prod_all / r for r in reach)
    p = float(np.max(np.abs(np.prod(theta[:, None] - o[None, :], axis=1))))
    lam_at = np.sum(np.abs(_lagrange(theta, m)), axis=1)
    denom = 1.0 / np.abs(_barycentric(m))
    slope_l = 0.0
    for j in range(m):
        others = np.delete(reach, j)
        slope_l += sum(float(np.prod(others)) / r for r in others) / denom[j]
    return float(p + 0.5 * step * slope_p), float(np.max(lam_at) + 0.5 * step * slope_l)


def _toeplitz(size: int, taps: np.ndarray) -> torch.Tensor:
    """The symmetric banded (size, size) matrix with ``taps[|i - j|]`` (0 beyond them)."""
    k = np.arange(size)
    lag = np.abs(k[:, None] - k[None, :])
    full = np.zeros(size, dtype=np.float64)
    full[:min(size, len(taps))] = taps[:size]
    return torch.from_numpy(np.where(lag < len(taps), full[np.minimum(lag, size - 1)], 0.0))


def _outer(axes: list[np.ndarray]) -> np.ndarray:
    """Per row, the products of one weight per axis: (rows, m^d), the last axis fastest."""
    w = axes[0]
    for a in axes[1:]:
        w = (w[:, :, None] * a[:, None, :]).reshape(len(w), -1)
    return w


def _contract(values: np.ndarray, axes: list[np.ndarray]) -> np.ndarray:
    """Per row, ``sum values[row, (a_1..a_d)] prod_l axes[l][row, a_l]``, one axis at a
    time from the last (values: (rows, m^d), the last axis fastest)."""
    rows = len(values)
    out = values
    for a in axes[::-1]:
        out = np.matmul(out.reshape(rows, -1, a.shape[1]), a[:, :, None])
    return out.reshape(rows)


def _bound_constant(n: int, d: int, shape: tuple[int, ...], p: float, lam: float) -> float:
    """C of the module docstring for ``n`` training points on a lattice of ``shape``:
    interpolation, rounding and position errors per unit of the envelope V."""
    m = GRID_ORDER
    # interpolation: d Lambda^(d-1) A s^m (1 + Lambda^d)
    a = _CRAMER * p / math.sqrt(math.factorial(m))
    interp = d * lam ** (d - 1) * a * GRID_SPACING ** m * (1.0 + lam ** d)
    # rounding: spreading (sums of at most n terms, weights of 2m + 2 roundings per
    # axis), a banded product per axis (at most max(shape) terms each, taps from exp),
    # interpolation (m^d terms); every magnitude within Lambda^(2d) V
    ops = n + (2 * m + 2) * d + d * (max(shape) + 4) + m ** d + 4
    rounding = lam ** (2 * d) * _gamma(ops)
    # positions: (x - g0) / delta moves a point by at most 2 eps of the lattice's width
    # (bounded by 4 eps here); a kernel moved by D bandwidths changes by at most
    # 0.86 D exp(-t^2 / 4) per axis; queries and training points both
    width = max(shape) * GRID_SPACING
    position = 2.0 * d * 0.86 * lam ** (2 * d) * 4.0 * _EPS * (width + 1.0)
    return interp + rounding + position


class KernelGrid:
    """The lattice of one training set and bandwidth (see the module docstring); build
    with :func:`grid_for`. :meth:`log_sums` scores queries. ``threads`` (default
    ``torch.get_num_threads()``): threads that take chunks of points in turn (NumPy's
    loops release the GIL), and the PyTorch threads of the convolution."""

    def __init__(self, train: np.ndarray, bandwidth: float, lo: np.ndarray,
                 shape: tuple[int, ...], threads: int | None = None) -> None:
        n, d = train.shape
        m = GRID_ORDER
        h = float(bandwidth)
        self.d = d
        self.threads = threads
        self.delta = GRID_SPACING * h
        self.lo = lo
        self.shape = shape
        self.strides = _strides(shape)
        steps = np.arange(m, dtype=np.int64)
        offsets = np.zeros(1, dtype=np.int64)
        for stride in self.strides:
            offsets = (offsets[:, None] + steps[None, :] * stride).ravel()
        self._stencil_offsets = offsets
        p, lam = interpolation_constants(m)
        #: C of the module docstring: the bound is constant * V(y) + truncation
        self.constant = _bound_constant(n, d, shape, p, lam)
        self._sum_at_nodes(train, lam)
        self._build_envelope(train, lam)

    def _sum_at_nodes(self, train: np.ndarray, lam: float) -> None:
        """Spread the training points onto the lattice (one array per thread) and
        convolve with the kernel: ``values``, the kernel sum at every node, and
        ``truncation``, what the kernel's cut leaves out of any query's sum."""
        n, d = train.shape
        size = int(np.prod(self.shape))

        def spread(rows: slice, acc: list[np.ndarray]) -> None:
            idx, axes, inside = self._stencil(train[rows])
            if not inside.all():  # (grid_for checks this before building)
                raise ValueError("kde lattice: a training point's interpolation is off the "
                                 "lattice")
            add = np.bincount(idx.ravel(), weights=_outer(axes).ravel(), minlength=size)
            if acc:
                acc[0] += add
            else:
                acc.append(add)

        weights = _sum_arrays(self._chunked(n, spread), size)
        # the kernel cut where n Lambda^(2d) k(t) < exp(-_CUT_NATS)
        cut = math.sqrt(2.0 * (_CUT_NATS + math.log(n) + 2 * d * math.log(lam)))
        taps = np.exp(-0.5 * (np.arange(int(cut / GRID_SPACING) + 1) * GRID_SPACING) ** 2)
        self.values = self._convolve(weights.reshape(self.shape), taps).ravel()
        # what the cut leaves out of any node's sum, through the query's interpolation
        self.truncation = lam ** (2 * d) * n * math.exp(-0.5 * (len(taps) * GRID_SPACING) ** 2)

    def _build_envelope(self, train: np.ndarray, lam: float) -> None:
        """The envelope V: counts in coarse cells convolved with the envelope at the
        cells' smallest distance (cells touching: 0), shifted by 2r, to exp(-100)."""
        n, d = train.shape
        reach = GRID_ORDER / 2 * GRID_SPACING  # r, bandwidths
        self.coarse = max(1, int(round(_COARSE / GRID_SPACING)))  # fine cells per coarse
        self.cshape = tuple(-(-s // self.coarse) for s in self.shape)
        counts = np.bincount(self._coarse_index(train), minlength=int(np.prod(self.cshape)))
        c = self.coarse * GRID_SPACING
        lags = np.arange(int((2.0 * reach + 20.0) / c) + 3)
        env = np.exp(-np.maximum(np.maximum(lags - 1, 0) * c - 2.0 * reach, 0.0) ** 2 / 4.0)
        self.envelope = self._convolve(counts.astype(np.float64).reshape(self.cshape),
                                       env).ravel()
        # all terms positive: the products' rounding; then whatever lies past the lags
        self.envelope *= 1.0 + _gamma(2 * d * max(self.cshape) + 8)
        self.envelope += n * math.exp(-max((len(lags) - 1) * c - 2.0 * reach, 0.0) ** 2 / 4.0)

    def _workers(self) -> int:
        return torch.get_num_threads() if self.threads is None else max(1, int(self.threads))

    def _chunked(self, n: int, fn) -> list[list]:  # type: ignore[no-untyped-def]
        """``fn(rows, acc)`` over chunks (at most :data:`_CHUNK`) of ``range(n)``, the chunks
        taken in turn by the threads; returns each thread's ``acc`` list."""
        workers = self._workers()
        # two chunks per thread where that keeps them at least _MIN_CHUNK long: a thread
        # the OS holds back leaves its second chunk to the others
        size = min(_CHUNK, max(_MIN_CHUNK, -(-n // (2 * workers))))
        starts = iter(range(0, n, size))
        lock = threading.Lock()

        def work() -> list:  # type: ignore[type-arg]
            acc: list = []  # type: ignore[type-arg]
            while True:
                with lock:
                    start = next(starts, None)
                if start is None:
                    return acc
                fn(slice(start, min(start + size, n)), acc)

        return run_workers(work, min(workers, -(-n // size)))

    def _convolve(self, grid: np.ndarray, taps: np.ndarray) -> np.ndarray:
        """Separable convolution of ``grid`` with ``taps`` along every axis (zero
        outside), one banded matrix product per axis, on the process's PyTorch threads."""
        out = grid
        for axis in range(grid.ndim):
            if out.shape[axis] <= _DENSE_AXIS:
                with _torch_threads(self._workers()):
                    mat = _toeplitz(out.shape[axis], taps)
                    out = torch.movedim(torch.tensordot(mat, torch.from_numpy(out),
                                                        dims=([1], [axis])), 0, axis).numpy()
            else:  # a direct sum over the taps (2 len(taps) - 1 terms each, as bounded)
                both = np.concatenate([taps[:0:-1], taps])
                out = correlate1d(out, both, axis=axis, mode="constant", cval=0.0)
        return np.ascontiguousarray(out)

    def _cells(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _positions(X, self.lo, self.delta, self.shape)

    def _coarse_index(self, X: np.ndarray) -> np.ndarray:
        k, _, _ = self._cells(X)
        q = np.clip(k // self.coarse, 0, np.array(self.cshape) - 1)
        return _flat(q, _strides(self.cshape))

    def _stencil(self, X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """Flat node indices (len(X), m^d) of each row's interpolation, its Lagrange
        weights per axis (d arrays (len(X), m); the node of index ``(a_1, .., a_d)`` in
        the row has weight ``prod_l weights[l][a_l]``), and whether its stencil lies inside
        the lattice (rows outside get index 0 and weights 0)."""
        m = GRID_ORDER
        k, theta, inside = self._cells(X)
        base = np.where(inside, _flat(k - (m // 2 - 1), self.strides), 0)
        idx = base[:, None] + self._stencil_offsets[None, :]
        weights = [_lagrange(theta[:, axis], m) for axis in range(self.d)]
        weights[0][~inside] = 0.0
        return idx, weights, inside

    def log_sums(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row of ``Z``: ``log sum_i exp(-||z - x_i||^2 / (2 h^2))`` (approximate), a
        certified bound on its error (nats; the rounding of the log itself excluded), and
        whether the row is within reach (its interpolation inside the lattice and the
        error bound E below the interpolated sum, so that ``-log1p(-E / sum)`` is finite:
        rows where it is not have value and bound nan)."""
        Z = np.ascontiguousarray(Z, dtype=np.float64)
        n = len(Z)
        values = np.full(n, np.nan)
        bounds = np.full(n, np.nan)
        ok = np.zeros(n, dtype=bool)

        def score(rows: slice, acc: list) -> None:  # type: ignore[type-arg]
            part = Z[rows]
            idx, axes, inside = self._stencil(part)
            approx = _contract(self.values[idx], axes)
            err = self.constant * self.envelope[self._coarse_index(part)] + self.truncation
            good = inside & (approx > err)
            with np.errstate(divide="ignore", invalid="ignore"):
                values[rows] = np.where(good, np.log(approx), np.nan)
                bounds[rows] = np.where(good, -np.log1p(-err / approx), np.nan)
            ok[rows] = good

        if n:
            self._chunked(n, score)
        return values, bounds, ok


def _positions(X: np.ndarray, lo: np.ndarray, delta: float, shape: tuple[int, ...]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's cell on the lattice ``lo + k delta`` (the index at or below it), its
    position in that cell, and whether all its interpolation's nodes lie on the lattice of
    ``shape`` nodes, decided on the float position before any cast (NaN, inf and positions
    past int64 are outside; their cell is 0)."""
    m = GRID_ORDER
    with np.errstate(invalid="ignore", over="ignore"):
        u = (X - lo) / delta
        inside = np.all((u >= m // 2 - 1) & (u < np.array(shape) - m // 2), axis=1)
    u[~inside] = 0.0
    k = np.floor(u)
    return k.astype(np.int64), u - k, inside


def _strides(shape: tuple[int, ...]) -> np.ndarray:
    return np.array([int(np.prod(shape[axis + 1:])) for axis in range(len(shape))],
                    dtype=np.int64)


def _flat(k: np.ndarray, strides: np.ndarray) -> np.ndarray:
    """Flat indices of the rows of multi-indices ``k`` (integer matmul is slow in NumPy)."""
    out = k[:, 0] * strides[0]
    for axis in range(1, k.shape[1]):
        out += k[:, axis] * strides[axis]
    return out


def _sum_arrays(parts: list[list[np.ndarray]], size: int) -> np.ndarray:
    total = np.zeros(size, dtype=np.float64)
    for acc in parts:
        for a in acc:
            total += a
    return total


@contextlib.contextmanager
def _torch_threads(threads: int):  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def grid_for(train: np.ndarray, bandwidth: float, *, threads: int | None = None
             ) -> KernelGrid | None:
    """The lattice for ``train`` (n, d) at ``bandwidth``, or None where it would exceed
    :data:`GRID_MAX_NODES` nodes or d exceeds :data:`GRID_MAX_DIM` (data spread over too
    many bandwidths for a lattice), or where rounding of the lattice's origin would leave a
    training point's interpolation off it (data of magnitude ~1e15 bandwidths)."""
    train = np.ascontiguousarray(train, dtype=np.float64)
    n, d = train.shape
    if d > GRID_MAX_DIM or n == 0:
        return None
    h = float(bandwidth)
    delta = GRID_SPACING * h
    pad = QUERY_MARGIN * h + (GRID_ORDER // 2 + 1) * delta
    with np.errstate(over="ignore", invalid="ignore"):
        lo = train.min(axis=0) - pad
        cells = np.ceil((train.max(axis=0) + pad - lo) / delta) + 1
    if not np.all(np.isfinite(cells)) or float(np.prod(cells)) > GRID_MAX_NODES:
        return None
    shape = tuple(int(c) for c in cells)
    if not np.all(_positions(train, lo, delta, shape)[2]):
        return None
    return KernelGrid(train, h, lo, shape, threads)
