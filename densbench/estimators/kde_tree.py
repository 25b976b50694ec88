"""Gaussian KDE log-densities with a certified error bound, for training sets too large to
sum every kernel term: exact sums over the training points near each block of queries,
and a bound, computed per query, on all the others.

Why this scheme. The exact path (:func:`densbench.estimators.kde.log_kernel_sums`) forms
every one of the ``n_query x n_train`` logits and skips only the exponentials of chunks
below ``e^-37`` of a row's sum: its cost grows as ``n_query x n_train`` (hours for 200,000
queries against 1.6 million 6-D training rows). Here the training points, in the same
locality order, are grouped in leaves of :data:`LEAF` consecutive points with their
bounding boxes, and the queries, in their own locality order, in blocks of at most
:data:`QUERY_BLOCK` rows with theirs. For a query block and a leaf the smallest distance
between the boxes bounds every kernel term between them from above. Per block the leaves
are taken nearest first until the leaves left over can add at most a tenth of
``tolerance`` times a guess of the block's sums (every leaf's count times its kernel at
the distance between the boxes' centres); the kept leaves
are summed exactly (the exact path's blocked product, on the kept rows only), the others
are bounded by ``T = sum count K(smallest box distance)``. A query's sum S then lies in
``[S_kept, S_kept + T]``: the value returned is ``log S_kept`` and its error is at most
``log1p(T / S_kept)`` nats, which is computed per query and returned with it (certified:
it follows from the box distances, not from an estimate), plus the expansion's rounding
bound (:func:`densbench.estimators.kde.expansion_error_bound`). (The midpoint
``log(S_kept + T / 2)`` would halve the bound but not the error: T is a loose bound, the
terms left out are usually far smaller, and the lower end is then the nearer.) The leaves
are chosen against a guess of the sums; the rows whose bound still exceeds the tolerance
(few) are summed by the exact path.

Weighed against the alternatives: a binned (grid) sum, as in KDEpy's FFT estimate, has an
error set by the grid spacing whose certified Lipschitz bound needs a spacing of about
``1e-3 h`` for 1e-6 nats (far too many cells beyond 2-D) and does not work in 6-D at all;
dual-tree recursion (Gray and Moore) refines both trees, but at this block size a single
level of query blocks against a flat list of leaves already prunes what the bound allows,
in vectorized NumPy per block instead of a recursion in Python. What this scheme cannot do
is approximate the near field: where nearly all of a dense cluster lies within a few
bandwidths of the queries, every one of those terms is summed, so its speed-up over the
exact path is large for small bandwidths and data spread over many bandwidths (the
tabular sets' millions of rows), and small for a wide kernel on compact data.

References:
    A. G. Gray and A. W. Moore, "Nonparametric density estimation: toward computational
    tractability", SIAM International Conference on Data Mining, 2003 (bounds from node
    distances; an error tolerance shared out among pruned nodes).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from densbench.estimators.kde import (
    BLOCK_TRAIN,
    CHUNK,
    DROP_NATS,
    EXPANSION_ERROR_MAX,
    PILOT_POINTS,
    _buffers,
    _error_bound,
    _row_block,
    _usable_bandwidth,
    _workers_for,
    augment_train,
    locality_order,
    log_kernel_sums,
)
from densbench.parallel import run_workers

__all__ = ["DIRECT_ROW_BOUND", "LEAF", "ORDER_AXES", "QUERY_BLOCK", "BoundedSums", "Leaves",
           "bounded_log_kernel_sums"]

#: Training points per leaf: one chunk of the exact path, so a kept leaf is also a unit
#: of its chunk skipping.
LEAF = CHUNK
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
_MIN_BLOCK = 16
#: A query block is split while its diagonal exceeds this many bandwidths.
_BLOCK_SPAN = 4.0
#: The bound given to rows that the exact path computes by explicit differences (their
#: expansion's rounding bound is too large): its stated accuracy.
DIRECT_ROW_BOUND = 1e-8
#: The terms the exact path's chunk skipping leaves out: below ``e^-DROP_NATS`` of a sum.
_SKIP_BOUND = math.exp(-DROP_NATS)


class BoundedSums(NamedTuple):
    """Per query row: the log kernel sum, a certified bound on its error (nats), and the
    fraction of the training points whose kernel terms were summed (the others bounded)."""

    values: np.ndarray
    bounds: np.ndarray
    summed: np.ndarray


class Leaves:
    """Bounding boxes of the training points in leaves of :data:`LEAF` consecutive rows of
    :func:`densbench.estimators.kde.augment_train` (its locality order; padding rows left
    out): ``lo``, ``hi`` (n_leaves, d) and ``log_count`` (n_leaves,)."""

    def __init__(self, train_aug: torch.Tensor, n_train: int) -> None:
        d = train_aug.shape[1] - 2
        rows = train_aug[:n_train, :d].numpy()
        starts = np.arange(0, n_train, LEAF)
        self.lo = np.minimum.reduceat(rows, starts, axis=0)
        self.hi = np.maximum.reduceat(rows, starts, axis=0)
        self.log_count = np.log(np.diff(np.append(starts, n_train)).astype(np.float64))


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


def _box_distances(lo: np.ndarray, hi: np.ndarray, leaves: Leaves
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Squared smallest distances between the box [lo, hi] and each leaf box, and squared
    distances between the boxes' centres."""
    gap = np.maximum(np.maximum(leaves.lo - hi, lo - leaves.hi), 0.0)
    mid = 0.5 * (leaves.lo + leaves.hi - lo - hi)
    return np.einsum("ij,ij->i", gap, gap), np.einsum("ij,ij->i", mid, mid)


def _choose_leaves(near_sq: np.ndarray, mid_sq: np.ndarray, log_count: np.ndarray,
                   scale: float, log_budget: float) -> tuple[np.ndarray, float]:
    """The leaves to sum exactly (indices, ascending) and the log of the bound T on the
    sum of all the others' kernel terms, for one query block.

    Leaves are taken nearest first until the bound on the rest is at most ``e^log_budget``
    times a guess of the block's sums (every leaf's count times its kernel between the
    boxes' centres). A guess, not a bound: the bound is checked per query afterwards."""
    upper = log_count + scale * near_sq   # log of each leaf's largest possible sum
    guess = log_count + scale * mid_sq
    top = float(np.max(guess))
    sum_guess = top + math.log(float(np.sum(np.exp(guess - top))))
    order = np.argsort(near_sq, kind="stable")
    # tail[k]: log of the bound on the leaves order[k:], nonincreasing in k
    tail = np.logaddexp.accumulate(upper[order][::-1])[::-1]
    k = max(1, int(np.count_nonzero(tail > log_budget + sum_guess)))
    rest = float(tail[k]) if k < len(order) else -math.inf
    return np.sort(order[:k]), rest


def bounded_log_kernel_sums(Z: np.ndarray, train: np.ndarray, bandwidth: float,
                            tolerance: float, *, train_aug: torch.Tensor | None = None,
                            leaves: Leaves | None = None, threads: int | None = None
                            ) -> BoundedSums:
    """``log sum_i exp(-||z - x_i||^2 / (2 h^2))`` per row z of ``Z`` to within
    ``tolerance`` nats, and per row a certified bound on its error (at most
    ``tolerance``, up to rounding bounds of order 1e-12; see the module docstring).

    ``train_aug`` and ``leaves`` are :func:`~densbench.estimators.kde.augment_train` of
    ``train`` and its :class:`Leaves`, when already built. ``threads`` worker threads
    (default ``torch.get_num_threads()``) take query blocks in turn, each on
    single-threaded PyTorch, as the exact path does. Memory: per thread the exact path's
    block buffer, the kept training rows of one query block (at most ``n_train x (d + 2)``
    values) and O(n_leaves x d) for the box distances.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(5000, 2))
        >>> Z = X[:3] + 0.01
        >>> got, bound, summed = bounded_log_kernel_sums(Z, X, 0.05, 1e-6)
        >>> exact = log_kernel_sums(Z, X, [0.05])[:, 0]
        >>> bool(np.all(np.abs(got - exact) <= bound)), bool(np.all(bound <= 1e-6))
        (True, True)
    """
    if not _usable_bandwidth(bandwidth):
        raise ValueError(f"bounded_log_kernel_sums: bandwidth {bandwidth!r} is not a "
                         f"positive float whose -1/(2 h^2) is finite and nonzero")
    if not 0.0 < tolerance < math.inf:
        raise ValueError(f"bounded_log_kernel_sums: tolerance must be > 0; got {tolerance!r}")
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    xa = augment_train(train, ORDER_AXES) if train_aug is None else train_aug
    n_train = len(train)
    leaves = Leaves(xa, n_train) if leaves is None else leaves
    n, d = Z.shape
    values = np.empty(n, dtype=np.float64)
    bounds = np.empty(n, dtype=np.float64)
    summed = np.ones(n, dtype=np.float64)
    if n == 0:
        return BoundedSums(values, bounds, summed)
    scale = -0.5 / (float(bandwidth) ** 2)
    z_sq = np.einsum("ij,ij->i", Z, Z)
    radius_sq = float(xa[:n_train, d + 1].max())
    rounding = _error_bound(z_sq, radius_sq, d, [scale])
    direct = rounding > EXPANSION_ERROR_MAX
    if direct.any():  # rows the expansion cannot be trusted with: the exact path's
        values[direct] = log_kernel_sums(Z[direct], train, [bandwidth], train_aug=xa,
                                         threads=threads)[:, 0]
        bounds[direct] = DIRECT_ROW_BOUND
    rows = np.flatnonzero(~direct)
    rows = rows[locality_order(Z[rows], ORDER_AXES)]
    log_budget = math.log(_MARGIN * tolerance)
    zt = torch.from_numpy(Z)
    blocks: Iterator[tuple[int, int]] = iter(
        _query_blocks(Z[rows], _BLOCK_SPAN * float(bandwidth)))
    lock = threading.Lock()

    def work() -> None:
        buffers = _buffers(QUERY_BLOCK * BLOCK_TRAIN, QUERY_BLOCK * (d + 2), False)
        while True:
            with lock:
                block = next(blocks, None)
            if block is None:
                return
            idx = rows[block[0]:block[1]]
            zb = Z[idx]
            near_sq, mid_sq = _box_distances(zb.min(axis=0), zb.max(axis=0), leaves)
            kept, rest = _choose_leaves(near_sq, mid_sq, leaves.log_count, scale, log_budget)
            kept_rows = (kept[:, None] * LEAF + np.arange(LEAF)).ravel()
            xk = xa[torch.from_numpy(kept_rows)]
            cb = min(BLOCK_TRAIN, xk.shape[0])
            pilot = xk[::max(1, xk.shape[0] // PILOT_POINTS)] if xk.shape[0] > cb else None
            sums = _row_block(zt[torch.from_numpy(idx)], xk, pilot, [scale], buffers, cb,
                              n_train)[:, 0] + scale * z_sq[idx]
            values[idx] = sums
            bounds[idx] = np.logaddexp(0.0, rest - sums)  # log1p(T / S_kept)
            summed[idx] = min(1.0, len(kept_rows) / n_train)

    run_workers(work, _workers_for(threads))
    # the kept sums' own rounding and the exact path's skipped chunks
    bounds[~direct] += rounding[~direct] + _SKIP_BOUND
    missed = bounds > tolerance  # the leaves left out weigh more than guessed
    if missed.any():
        values[missed] = log_kernel_sums(Z[missed], train, [bandwidth], train_aug=xa,
                                         threads=threads)[:, 0]
        bounds[missed] = np.where(direct[missed], DIRECT_ROW_BOUND,
                                  rounding[missed] + _SKIP_BOUND)
        summed[missed] = 1.0
    return BoundedSums(values, bounds, summed)
