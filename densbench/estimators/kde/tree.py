"""Gaussian KDE log-densities with a certified error bound, for training sets too large to
sum every kernel term: exact sums over the training points near each query, and a bound,
computed per query, on all the others.

Why. The exact path (:func:`densbench.estimators.kde.exact.log_kernel_sums`) forms every one of
the ``n_query x n_train`` logits and skips only the exponentials of chunks below ``e^-37``
of a row's sum: its cost grows as ``n_query x n_train`` (hours for 200,000 queries
against 1.6 million 6-D training rows). Here each query is scored in one of two ways.

Balls (sparse rows). With ``S_lo``, the sum of the kernel terms of the query's
:data:`_K_NEAR` nearest training points (a lower bound of its sum S), every point
farther than ``r`` with ``n K(r) = tolerance S_lo`` adds less than ``K(r)``; the points
within ``r`` are summed by explicit differences and the others bounded by ``T = n_far
K(r)``. Nearest points and balls come from SciPy's k-d tree (``cKDTree``, built at fit).
A query whose ball holds at most :data:`BALL_MAX` points is done this way; on data spread
over many bandwidths (6-D tabular data, a narrow kernel) that is nearly every query and
the balls hold a few dozen points of millions.

Blocks (dense rows). Where a ball holds thousands of points, pairs one by one cost more
than the exact path's matrix products, so these rows are scored in blocks: the training
points, in the exact path's locality order, are grouped in leaves of :data:`LEAF`
consecutive points with their bounding boxes (and the leaves in groups of :data:`GROUP`,
so that a query block looks at every group but only at the leaves of the groups near it),
and the queries, in their own locality order, in blocks of at most :data:`QUERY_BLOCK`
rows with theirs. The smallest distance between a block's box and a leaf's bounds every
kernel term between them from above. Per block the groups, then their leaves, are taken
nearest first until those left over can add at most a tenth of ``tolerance`` times a
guess of the block's sums (each box's count times its kernel at the distance between the
boxes' centres); the kept leaves are summed exactly (the exact path's blocked product, on
the kept rows only), the others bounded by ``T = sum count K(smallest box distance)``.
The rows whose bound still exceeds the tolerance (the guess was too high: few) are summed
by the exact path.

Either way a query's sum S lies in ``[S_kept, S_kept + T]``: the value returned is
``log S_kept`` and its error is at most ``log1p(T / S_kept)`` nats, computed per query
and returned with it (certified: it follows from distances, not from an estimate), plus
bounds on the rounding. (The midpoint ``log(S_kept + T / 2)`` would halve the bound but
not the error: T is a loose bound, the terms left out are usually far smaller, and the
lower end is then the nearer.)

Weighed against the alternatives: in one and two dimensions a lattice carries the sum
more cheaply, with its own certified bound (:mod:`densbench.estimators.kde.lattice`, which
the estimator prefers there); in more, its nodes grow as ``(span / (0.1 h))^d``. A fast
Gauss transform (Taylor or Hermite expansions about box centres) would approximate the
near field too, with a bound, but at 1e-6 nats it needs about 100 coefficients per box
in 2-D, more than the 32 points of a leaf, and grows as ``p^d``. Dual-tree recursion
(Gray and Moore) refines both trees; the k-d tree's balls and two fixed levels of
training boxes prune what the bound allows here, in compiled SciPy and vectorized NumPy
instead of a recursion in Python.

What neither part does is approximate the near field: every kernel term of a training
point within about ``sqrt(2 log(n / tolerance)) h`` of a query is summed, as in the exact
path. The gain is therefore large where that ball holds few of the training points and
small where it holds many: in 2-D, ``eight_gaussians`` at h = 0.1 (each query's whole
cluster lies within it) the blocks sum about 12% of the terms (the documentation gives
the measured rates).

References:
    A. G. Gray and A. W. Moore, "Nonparametric density estimation: toward computational
    tractability", SIAM International Conference on Data Mining, 2003 (bounds from node
    distances; an error tolerance shared out among pruned nodes).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import logsumexp

from densbench.estimators.kde.exact import (
    BLOCK_TRAIN,
    CHUNK,
    DROP_NATS,
    EXPANSION_ERROR_MAX,
    PILOT_POINTS,
    BlockBuffers,
    augment_train,
    expansion_bound_of_norms,
    locality_order,
    log_kernel_sums,
    magnitude_rounding,
    row_block_sums,
    thread_buffers,
    usable_bandwidth,
    workers_for,
)
from densbench.parallel import run_workers

__all__ = ["DIRECT_ROW_BOUND", "EXACT_SHARE", "GROUP", "LEAF", "ORDER_AXES", "QUERY_BLOCK",
           "BALL_MAX", "BoundedSums", "Leaves", "bounded_log_kernel_sums"]

#: Training points per leaf: one chunk of the exact path, so a kept leaf is also a unit
#: of its chunk skipping.
LEAF = CHUNK
#: Nearest training points whose kernel terms bound a query's sum from below (the ball's
#: radius follows from that bound) ...
_K_NEAR = 8
#: ... and the most training points a query's ball may hold to be summed through the
#: k-d tree (explicit differences per pair; denser rows go to the blocks' products, which
#: are faster from a few hundred pairs per row; on tabular data spread over many
#: bandwidths nearly every ball holds fewer points than this).
BALL_MAX = 512
#: Query rows (evenly strided) on which :func:`_most_balls_fit` decides whether to use the
#: k-d tree stage; one eighth as many query blocks judge :func:`_kept_share`.
_ROUTE_PILOT = 64
#: Where the query blocks would sum more than this fraction of the training points, the
#: rows left to them are summed by the exact path instead (every term, one blocked product
#: per row block over all training points, within 1e-8 nats): a block's work per term is
#: 2-4 times the exact path's (smaller products, gathered rows), so the blocks pay off
#: only where they sum a small share of the terms.
EXACT_SHARE = 0.15
#: Query rows per k-d tree call (bounds the pairs held at once to BALL_MAX times it).
_BALL_CHUNK = 256
#: The points outside a ball weigh at most this fraction of the tolerance (the rest is
#: left for rounding).
_BALL_SHARE = 0.999
#: Leaves per group (see :class:`Leaves`).
GROUP = 32
#: Query rows per block: a block's product with its kept training rows then fills the
#: exact path's 4 MiB block buffer (256 x 2048 float64 values).
QUERY_BLOCK = 256
#: Principal axes of the locality order of the training points and the queries: every
#: axis of a 6-D set (over the first 4 only, a leaf's box spans the others' whole range).
ORDER_AXES = 8
#: The leaves kept are chosen for this fraction of the tolerance (against a guess of the
#: sums), so that few rows miss the tolerance and go to the exact path.
_MARGIN = 0.1
#: Fewest query rows in a block that is split for its width (see :func:`_query_blocks`).
_MIN_BLOCK = 8
#: A query block is split while its diagonal exceeds this many bandwidths.
_BLOCK_SPAN = 4.0
#: The bound given to rows that the exact path computes by explicit differences (their
#: expansion's rounding bound is too large): its stated accuracy, to which
#: :func:`~densbench.estimators.kde.exact.magnitude_rounding` adds what grows with the size of
#: the logits.
DIRECT_ROW_BOUND = 1e-8
_EPS = float(np.finfo(np.float64).eps)
#: The terms the exact path's chunk skipping leaves out: below ``e^-DROP_NATS`` of a sum.
_SKIP_BOUND = math.exp(-DROP_NATS)


class BoundedSums(NamedTuple):
    """Per query row: the log kernel sum, a certified bound on its error (nats), and the
    fraction of the training points whose kernel terms were summed (the others bounded)."""

    values: np.ndarray
    bounds: np.ndarray
    summed: np.ndarray


class _Boxes:
    """Bounding boxes ``lo``, ``hi`` (n_boxes, d) of runs of rows, and ``log_count``."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, counts: np.ndarray) -> None:
        self.lo, self.hi = lo, hi
        self.log_count = np.log(counts.astype(np.float64))


class Leaves:
    """Bounding boxes of the training points in leaves of :data:`LEAF` consecutive rows of
    :func:`densbench.estimators.kde.exact.augment_train` (its locality order; padding rows left
    out), ``leaf``, and of groups of :data:`GROUP` consecutive leaves, ``group``: a query
    block looks at every group, then only at the leaves of the groups it keeps."""

    def __init__(self, train_aug: torch.Tensor, n_train: int) -> None:
        d = train_aug.shape[1] - 2
        rows = train_aug[:n_train, :d].numpy()
        starts = np.arange(0, n_train, LEAF)
        counts = np.diff(np.append(starts, n_train))
        self.leaf = _Boxes(np.minimum.reduceat(rows, starts, axis=0),
                           np.maximum.reduceat(rows, starts, axis=0), counts)
        first = np.arange(0, len(starts), GROUP)
        self.group = _Boxes(np.minimum.reduceat(self.leaf.lo, first, axis=0),
                            np.maximum.reduceat(self.leaf.hi, first, axis=0),
                            np.add.reduceat(counts, first))


def _query_blocks(Zs: np.ndarray, span: float) -> list[tuple[int, int]]:
    """Runs of the ordered queries ``Zs``: of at most :data:`QUERY_BLOCK` rows, halved
    while their bounding box's diagonal exceeds ``span`` (down to :data:`_MIN_BLOCK`
    rows): a wide block would keep the leaves near any of its rows for all of them."""
    todo = [(b, min(b + QUERY_BLOCK, len(Zs))) for b in range(0, len(Zs), QUERY_BLOCK)]
    done = []
    while todo:
        b0, b1 = todo.pop()
        part = Zs[b0:b1]
        diag = float(np.linalg.norm(part.max(axis=0) - part.min(axis=0)))
        if diag > span and b1 - b0 > _MIN_BLOCK:
            mid = (b0 + b1) // 2
            todo += [(b0, mid), (mid, b1)]
        else:
            done.append((b0, b1))
    return sorted(done)


def _box_distances(lo: np.ndarray, hi: np.ndarray, boxes: _Boxes
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Squared smallest distances between the box [lo, hi] and each of ``boxes``, and
    squared distances between the boxes' centres."""
    gap = np.maximum(np.maximum(boxes.lo - hi, lo - boxes.hi), 0.0)
    mid = 0.5 * (boxes.lo + boxes.hi - lo - hi)
    return np.einsum("ij,ij->i", gap, gap), np.einsum("ij,ij->i", mid, mid)


def _logsumexp(x: np.ndarray) -> float:
    top = float(np.max(x))
    return top + math.log(float(np.sum(np.exp(x - top)))) if top > -math.inf else top


def _nearest_first(near_sq: np.ndarray, log_count: np.ndarray, scale: float,
                   log_limit: float) -> tuple[np.ndarray, float]:
    """Boxes taken nearest first until the bound on the rest (each box's count times its
    kernel at the smallest distance) is at most ``e^log_limit``: their indices
    (ascending) and the log of that bound on the rest."""
    order = np.argsort(near_sq, kind="stable")
    # tail[k]: log of the bound on the boxes order[k:], nonincreasing in k
    tail = np.logaddexp.accumulate((log_count + scale * near_sq)[order][::-1])[::-1]
    k = max(1, int(np.count_nonzero(tail > log_limit)))
    return np.sort(order[:k]), float(tail[k]) if k < len(order) else -math.inf


def _leaf_range(groups: np.ndarray, n_leaves: int) -> np.ndarray:
    """The leaves of the given groups (ascending)."""
    leaves = (groups[:, None] * GROUP + np.arange(GROUP)).ravel()
    return leaves[leaves < n_leaves]


def _choose_leaves(lo: np.ndarray, hi: np.ndarray, leaves: Leaves, scale: float,
                   log_budget: float) -> tuple[np.ndarray, float]:
    """The leaves to sum exactly for the query block with box [lo, hi] (indices,
    ascending) and the log of the bound T on the sum of all the others' kernel terms.

    Groups, then the leaves of the groups kept, are taken nearest first until the bound
    on the rest is at most half of ``e^log_budget`` times a guess of the block's sums
    (each box's count times its kernel between the boxes' centres, over the groups and
    over the leaves of the two nearest groups: in many dimensions a group's centre lies
    far from every point of it). A guess, not a bound: the bound is checked per query
    afterwards."""
    n_leaves = len(leaves.leaf.log_count)
    near_g, mid_g = _box_distances(lo, hi, leaves.group)
    nearest = _leaf_range(np.argsort(near_g, kind="stable")[:2], n_leaves)
    _, mid_l = _box_distances(lo, hi, _subset(leaves.leaf, nearest))
    guess = max(_logsumexp(leaves.group.log_count + scale * mid_g),
                _logsumexp(leaves.leaf.log_count[nearest] + scale * mid_l))
    limit = log_budget + guess - math.log(2.0)
    groups, rest_g = _nearest_first(near_g, leaves.group.log_count, scale, limit)
    candidates = _leaf_range(groups, n_leaves)
    near_l, _ = _box_distances(lo, hi, _subset(leaves.leaf, candidates))
    kept, rest_l = _nearest_first(near_l, leaves.leaf.log_count[candidates], scale, limit)
    return candidates[kept], float(np.logaddexp(rest_g, rest_l))


def _subset(boxes: _Boxes, idx: np.ndarray) -> _Boxes:
    out = _Boxes.__new__(_Boxes)
    out.lo, out.hi, out.log_count = boxes.lo[idx], boxes.hi[idx], boxes.log_count[idx]
    return out


def _ball_radius_sq(Z: np.ndarray, kdtree: cKDTree, scale: float, tolerance: float, n: int,
                    workers: int) -> np.ndarray:
    """Per row of ``Z``, the squared radius r^2 of its ball: every training point farther
    than r adds at most ``K(r)`` with ``n K(r) = tolerance S_lo``, ``S_lo`` the sum over
    its :data:`_K_NEAR` nearest training points (a lower bound of its kernel sum)."""
    k = min(_K_NEAR, n)
    dist, _ = kdtree.query(Z, k=k, workers=workers)
    log_lo = logsumexp(scale * np.reshape(dist, (len(Z), k)) ** 2, axis=1)
    # n K(r) <= tolerance S_lo <= tolerance S: r beyond the nearest point (k / n < 1)
    return (math.log(_BALL_SHARE * tolerance) + log_lo - math.log(n)) / scale


def _most_balls_fit(Z: np.ndarray, kdtree: cKDTree, scale: float, tolerance: float, n: int,
                    workers: int) -> bool:
    """Whether at least half of the balls of at most :data:`_ROUTE_PILOT` rows of ``Z``
    (evenly strided) hold at most :data:`BALL_MAX` training points. Where they do not,
    the k-d tree stage is skipped: counting a ball walks its points, and a full ball's row
    goes to the blocks (or the exact path) anyway."""
    if n <= BALL_MAX:
        return True
    pilot = Z[::max(1, -(-len(Z) // _ROUTE_PILOT))]
    r_sq = _ball_radius_sq(pilot, kdtree, scale, tolerance, n, workers)
    # a ball holds more than BALL_MAX points iff its (BALL_MAX + 1)-th nearest is inside
    far, _ = kdtree.query(pilot, k=[BALL_MAX + 1], workers=workers)
    full = np.reshape(far, len(pilot)) ** 2 <= r_sq
    return 2 * int(np.count_nonzero(full)) <= len(pilot)


def _kept_share(Zs: np.ndarray, blocks: list[tuple[int, int]], leaves: Leaves,
                scale: float, log_budget: float, n_train: int) -> float:
    """The mean fraction of the training points that the query blocks ``blocks`` of the
    ordered rows ``Zs`` would sum, judged on at most :data:`_ROUTE_PILOT` // 8 of the
    blocks (evenly spaced)."""
    picks = blocks[::max(1, -(-len(blocks) // (_ROUTE_PILOT // 8)))]
    kept = [len(_choose_leaves(Zs[b0:b1].min(axis=0), Zs[b0:b1].max(axis=0), leaves, scale,
                               log_budget)[0]) for b0, b1 in picks]
    return min(1.0, float(np.mean(kept)) * LEAF / n_train)


def _ball_sums(Z: np.ndarray, train: np.ndarray, kdtree: cKDTree, scale: float,
               tolerance: float, workers: int) -> tuple[BoundedSums, np.ndarray]:
    """The rows of ``Z`` whose ball (see the module docstring) holds at most
    :data:`BALL_MAX` training points, summed over that ball by explicit differences, and
    a mask of those rows (the others are left for the blocks)."""
    n, q = len(train), len(Z)
    out = BoundedSums(np.empty(q), np.empty(q), np.empty(q))
    ok = np.zeros(q, dtype=bool)
    for c0 in range(0, q, _BALL_CHUNK):
        zc = Z[c0:c0 + _BALL_CHUNK]
        r_sq = _ball_radius_sq(zc, kdtree, scale, tolerance, n, workers)
        r = np.sqrt(r_sq)
        counts = np.asarray(kdtree.query_ball_point(zc, r, return_length=True,
                                                    workers=workers))
        take = (counts > 0) & (counts <= BALL_MAX)
        if not take.any():
            continue
        near = kdtree.query_ball_point(zc[take], r[take], return_sorted=False,
                                       workers=workers)
        lengths = np.fromiter(map(len, near), dtype=np.intp, count=len(near))
        flat = np.fromiter(itertools.chain.from_iterable(near), dtype=np.intp,
                           count=int(lengths.sum()))
        row = np.repeat(np.arange(len(lengths)), lengths)
        diff = zc[take][row] - train[flat]
        logits = scale * np.einsum("ij,ij->i", diff, diff)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        top = np.maximum.reduceat(logits, starts)
        log_near = top + np.log(np.add.reduceat(np.exp(logits - top[row]), starts))
        with np.errstate(divide="ignore"):  # no point outside the ball: log 0
            log_far = np.log((n - lengths).astype(np.float64)) + scale * r_sq[take]
        idx = c0 + np.flatnonzero(take)
        out.values[idx] = log_near
        # the points outside, then rounding: each squared difference to (d + 2) eps
        # relative, each exp and the sum to a few eps per term
        out.bounds[idx] = (np.logaddexp(0.0, log_far - log_near)
                           + 4.0 * _EPS * ((Z.shape[1] + 2) * -scale * r_sq[take] + lengths))
        out.summed[idx] = lengths / n
        ok[idx] = True
    return out, ok


def bounded_log_kernel_sums(Z: np.ndarray, train: np.ndarray, bandwidth: float,
                            tolerance: float, *, train_aug: torch.Tensor | None = None,
                            leaves: Leaves | None = None, kdtree: cKDTree | None = None,
                            threads: int | None = None) -> BoundedSums:
    """``log sum_i exp(-||z - x_i||^2 / (2 h^2))`` per row z of ``Z`` to within
    ``tolerance`` nats, and per row a certified bound on its error (at most
    ``tolerance``, up to rounding bounds of order 1e-12 near the data, and of order
``1e-15 |value|`` far from it, where no float64 result is closer; see the module
docstring).

    ``train_aug``, ``leaves`` and ``kdtree`` are
    :func:`~densbench.estimators.kde.exact.augment_train` of ``train`` (over
    :data:`ORDER_AXES` axes), its :class:`Leaves` and ``cKDTree(train)``, when already
    built. ``threads`` (default ``torch.get_num_threads()``): the k-d tree's ``workers``,
    and worker threads that take query blocks in turn, each on single-threaded PyTorch, as
    the exact path does. Memory: the pairs of :data:`_BALL_CHUNK` balls at a time (at most
    ``BALL_MAX x _BALL_CHUNK`` = 131,072 pairs, O(d) values each); per thread the exact
    path's block buffer, the kept training rows of one query block (at most
    ``n_train x (d + 2)`` values) and O(n_leaves x d) for the box distances.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(5000, 2))
        >>> Z = X[:3] + 0.01
        >>> got, bound, summed = bounded_log_kernel_sums(Z, X, 0.05, 1e-6)
        >>> exact = log_kernel_sums(Z, X, [0.05])[:, 0]
        >>> bool(np.all(np.abs(got - exact) <= bound)), bool(np.all(bound <= 1e-6))
        (True, True)
    """
    if not usable_bandwidth(bandwidth):
        raise ValueError(f"bounded_log_kernel_sums: bandwidth {bandwidth!r} is not a "
                         f"positive float whose -1/(2 h^2) is finite and nonzero")
    if not 0.0 < tolerance < math.inf:
        raise ValueError(f"bounded_log_kernel_sums: tolerance must be > 0; got {tolerance!r}")
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    xa = augment_train(train, ORDER_AXES) if train_aug is None else train_aug
    leaves = Leaves(xa, len(train)) if leaves is None else leaves
    n, d = Z.shape
    out = BoundedSums(np.empty(n, dtype=np.float64), np.empty(n, dtype=np.float64),
                      np.ones(n, dtype=np.float64))
    if n == 0:
        return out
    scale = -0.5 / (float(bandwidth) ** 2)
    z_sq = np.einsum("ij,ij->i", Z, Z)
    rounding = expansion_bound_of_norms(z_sq, float(xa[:len(train), d + 1].max()), d, [scale])
    p = _Problem(Z, train, xa, leaves, bandwidth, scale, tolerance, threads, z_sq, rounding)
    direct = rounding > EXPANSION_ERROR_MAX
    if direct.any():  # rows the expansion cannot be trusted with: the exact path's
        out.values[direct] = _exact_sums(p, direct)
        out.bounds[direct] = DIRECT_ROW_BOUND
    done = direct.copy()
    _ball_stage(p, np.flatnonzero(~direct), kdtree, out, done)
    rows = _block_stage(p, np.flatnonzero(~done), out)
    _final_bounds(p, rows, direct, out)
    return out


class _Problem(NamedTuple):
    """One call of :func:`bounded_log_kernel_sums`: its arguments and what every stage
    reads (the scale ``-1 / (2 h^2)``, the queries' squared norms and their expansion
    rounding bounds)."""

    Z: np.ndarray
    train: np.ndarray
    xa: torch.Tensor
    leaves: Leaves
    bandwidth: float
    scale: float
    tolerance: float
    threads: int | None
    z_sq: np.ndarray
    rounding: np.ndarray


def _exact_sums(p: _Problem, rows: np.ndarray) -> np.ndarray:
    """The log kernel sums of ``Z[rows]`` by the exact path (every term)."""
    return log_kernel_sums(p.Z[rows], p.train, [p.bandwidth], train_aug=p.xa,
                           threads=p.threads)[:, 0]


def _ball_stage(p: _Problem, rest: np.ndarray, kdtree: cKDTree | None, out: BoundedSums,
                done: np.ndarray) -> None:
    """Sum the rows ``rest`` whose ball holds few training points through the k-d tree
    (where most of them do), marking them in ``done``."""
    if not len(rest):
        return
    kdtree = cKDTree(p.train) if kdtree is None else kdtree
    workers = workers_for(p.threads)
    if _most_balls_fit(p.Z[rest], kdtree, p.scale, p.tolerance, len(p.train), workers):
        ball, ok = _ball_sums(p.Z[rest], p.train, kdtree, p.scale, p.tolerance, workers)
        for have, got in zip(out, ball, strict=True):
            have[rest[ok]] = got[ok]
        done[rest[ok]] = True


def _block_stage(p: _Problem, rows: np.ndarray, out: BoundedSums) -> np.ndarray:
    """Sum the rows ``rows`` in query blocks over their kept leaves, or all by the exact
    path where the blocks would keep a large share of the leaves anyway; returns the rows
    summed by blocks (their bounds still lack the rounding of the kept sums)."""
    rows = rows[locality_order(p.Z[rows], ORDER_AXES)]
    log_budget = math.log(_MARGIN * p.tolerance)
    block_list = _query_blocks(p.Z[rows], _BLOCK_SPAN * float(p.bandwidth))
    if len(rows) and _kept_share(p.Z[rows], block_list, p.leaves, p.scale, log_budget,
                                 len(p.train)) > EXACT_SHARE:
        # the blocks would sum a large share of the terms anyway, at 2-4x the exact path's
        # cost per term: every term, by the exact path's products over whole row blocks
        # (within 1e-8 nats; bounded as the missed rows of _final_bounds)
        out.values[rows] = _exact_sums(p, rows)
        out.bounds[rows] = p.rounding[rows] + _SKIP_BOUND
        return rows[:0]
    if len(rows):
        _sum_blocks(p, rows, block_list, log_budget, out)
    return rows


def _sum_blocks(p: _Problem, rows: np.ndarray, block_list: list[tuple[int, int]],
                log_budget: float, out: BoundedSums) -> None:
    """:func:`_sum_block` of each query block of ``rows``, the blocks taken in turn by
    worker threads."""
    zt = torch.from_numpy(p.Z)
    blocks: Iterator[tuple[int, int]] = iter(block_list)
    lock = threading.Lock()

    def work() -> None:
        buffers = thread_buffers(QUERY_BLOCK * BLOCK_TRAIN, QUERY_BLOCK * (p.Z.shape[1] + 2),
                                 False)
        while True:
            with lock:
                block = next(blocks, None)
            if block is None:
                return
            _sum_block(p, zt, rows[block[0]:block[1]], log_budget, buffers, out)

    run_workers(work, workers_for(p.threads))


def _sum_block(p: _Problem, zt: torch.Tensor, idx: np.ndarray, log_budget: float,
               buffers: BlockBuffers, out: BoundedSums) -> None:
    """The query rows ``idx`` summed over the leaves :func:`_choose_leaves` keeps for
    them, each bounded by ``log1p(T / S_kept)``."""
    n_train = len(p.train)
    zb = p.Z[idx]
    kept, rest = _choose_leaves(zb.min(axis=0), zb.max(axis=0), p.leaves, p.scale,
                                log_budget)
    kept_rows = (kept[:, None] * LEAF + np.arange(LEAF)).ravel()
    xk = p.xa[torch.from_numpy(kept_rows)]
    cb = min(BLOCK_TRAIN, xk.shape[0])
    pilot = xk[::max(1, xk.shape[0] // PILOT_POINTS)] if xk.shape[0] > cb else None
    sums = row_block_sums(zt[torch.from_numpy(idx)], xk, pilot, [p.scale], buffers, cb,
                          n_train)[:, 0] + p.scale * p.z_sq[idx]
    out.values[idx] = sums
    out.bounds[idx] = np.logaddexp(0.0, rest - sums)  # log1p(T / S_kept)
    out.summed[idx] = min(1.0, len(kept_rows) / n_train)


def _final_bounds(p: _Problem, rows: np.ndarray, direct: np.ndarray, out: BoundedSums
                  ) -> None:
    """Add every row's rounding that grows with its size, and to the rows summed by
    blocks (``rows``) their kept sums' own rounding and the exact path's skipped chunks;
    rows whose bound then exceeds the tolerance are summed again by the exact path."""
    n, d = p.Z.shape
    n_train = len(p.train)
    bounds = out.bounds
    bounds += magnitude_rounding(np.abs(out.values), d, n_train, direct)
    bounds[rows] += p.rounding[rows] + _SKIP_BOUND
    missed = np.zeros(n, dtype=bool)  # (never a direct row)
    missed[rows] = bounds[rows] > p.tolerance  # the leaves left out weigh more than guessed
    if missed.any():
        out.values[missed] = _exact_sums(p, missed)
        bounds[missed] = (p.rounding[missed] + _SKIP_BOUND
                          + magnitude_rounding(np.abs(out.values[missed]), d, n_train, False))
        out.summed[missed] = 1.0
