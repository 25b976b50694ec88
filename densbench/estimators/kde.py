"""Gaussian kernel density estimation, exact to rounding and with bounded memory.

The density is ``p(x) = (1/n) sum_i N(x; x_i, h^2 I)``, so

    log p(x) = logsumexp_i(-||x - x_i||^2 / (2 h^2)) - log n - (d/2) log(2 pi h^2).

It is evaluated in PyTorch float64 by :func:`log_kernel_sums`, without a tree and without
approximating any term that matters. With ``s = -1 / (2 h^2)`` the logit of query z and
training point x is ``s ||z||^2 + s (||x||^2 - 2 z.x)``; the first term is constant along a
row and added at the end, so only ``s (||x||^2 - 2 z.x) - c(z)`` is formed, as ONE matrix
product of augmented rows ``[-2 s z, -c(z), s] . [x, 1, ||x||^2]`` written into a
preallocated block buffer (the training side is built once, at fit, by
:func:`augment_train`). The shift ``c(z)`` starts as the largest logit over a fixed pilot
subset of the training points (:data:`PILOT_POINTS`; with a single block of training
points, that block's own largest logit), a lower bound of the row's largest logit, so the
row's largest shifted term is >= 1 and its sum cannot underflow. Where a block's row
maximum exceeds the shift by more than :data:`_RAISE_ABOVE` nats (the pilot missed the
nearest points: common in 64-D), that row's shift is raised to it and its sum so far
rescaled (an online logsumexp that moves only when it must), so no term overflows.

Skipping what cannot matter: the training points are stored in :func:`locality_order`, so
each run of :data:`CHUNK` consecutive points lies close together. Per block the largest
logit of every chunk is taken (one pass); a chunk whose largest term lies more than
``DROP_NATS + log n`` nats below its row's largest term is skipped, and only the kept
chunks are gathered, clamped at :data:`EXP_FLOOR` and exponentiated. All skipped terms
together are below ``e^-37 = 8.5e-17`` times the row's sum: under the rounding of a float64
result. Where most chunks are kept, the block is summed densely in place. The smaller the
bandwidth against the data's spread, the fewer chunks are kept. An ``n_query x n_train``
matrix never exists: the data are centred on the training mean first (so the expansion
loses little accuracy) and processed in blocks of at most :data:`BLOCK_BYTES` bytes.

Accuracy: the expansion's rounding error grows with ``|s| (||z|| + max ||x||)^2``. Per query
row, :func:`expansion_error_bound` bounds it; rows where the bound exceeds
:data:`EXPANSION_ERROR_MAX` (a bandwidth tiny against the data's spread, or a query far
from all the training data) are computed from explicit differences instead. Ordinary
bandwidths keep the bound far below that threshold, so the product is the usual path and
the slow one is taken only where the product could not be trusted.

Threads: with ``torch.get_num_threads()`` = T > 1, the calling thread and T - 1 worker
threads (kept between calls, :func:`densbench.parallel.run_workers`) each take whole row
blocks and run single-threaded PyTorch on them, each with its own block buffer; see
:func:`log_kernel_sums`.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from densbench.estimators.base import DensityEstimator
from densbench.estimators.kde_grid import GRID_MAX_DIM
from densbench.estimators.params import Options, ParamConstraints, Satisfies, is_real
from densbench.parallel import run_workers

__all__ = ["BLOCK_BYTES", "BLOCK_TRAIN", "CHUNK", "CV_ROWS_COARSE", "CV_ROWS_TREE",
           "CV_STOP_AFTER", "CV_STOP_Z", "DROP_NATS",
           "EXPANSION_ERROR_MAX", "ONE_THREAD_TERMS", "TREE_MAX_DIM", "TREE_MIN_TRAIN", "EXP_FLOOR",
           "KDE", "PILOT_POINTS", "augment_train", "expansion_error_bound", "locality_order",
           "log_kernel_sums", "magnitude_rounding"]

_RULES = ("scott", "silverman", "cv")
_ALGORITHMS = ("auto", "exact", "tree", "grid")
#: algorithm='auto' takes the lattice (1-D and 2-D, where it fits) or the tree path from
#: this many training points ...
TREE_MIN_TRAIN = 50_000
#: ... the tree in at most this many dimensions (beyond them the leaves' boxes are too
#: wide to prune)
TREE_MAX_DIM = 8
#: 'cv' on the tree and lattice paths scores at most this many validation rows (evenly
#: strided) per bandwidth of the fine grid: the standard error of their mean is already far
#: below the differences between the grid's bandwidths, and every bandwidth is a full pass
#: over them ...
CV_ROWS_TREE = 20_000
#: ... and at most this many (strided from those) per bandwidth of the coarse grid, which
#: only locates the fine grid (its widest bandwidths make every tree ball dense: at the
#: size of POWER, 1.6M training rows, 25 of them on 20,000 rows each ran past 36 minutes).
CV_ROWS_COARSE = 2_000
#: 'cv' on the tree and lattice paths: the coarse scan stops after this many bandwidths in
#: a row below the best so far ...
CV_STOP_AFTER = 2
#: ... each by more than this many paired standard errors (over the coarse rows).
CV_STOP_Z = 5.0
#: 'cv': the coarse grid of multiples of Scott's bandwidth ...
_CV_GRID = np.geomspace(0.05, 5.0, 25)
#: ... is refined with this many log-spaced points between the best point's neighbours.
_CV_FINE = 11

#: Size in bytes of the one float64 block buffer of :func:`log_kernel_sums` (two with
#: several bandwidths): the bound on its working memory whatever n_query x n_train. 4 MiB
#: keeps the block in the L2/L3 caches, where the clamp, exp and sum passes are cheap;
#: fresh or larger blocks cost page faults and memory traffic.
BLOCK_BYTES = 4 << 20
#: Training rows per block at most (the query rows then fill :data:`BLOCK_BYTES`).
BLOCK_TRAIN = 2048
#: Training points (evenly strided) whose largest logit shifts each query row.
PILOT_POINTS = 64
#: Shifted logits are clamped at this value before ``exp``: exp of a float64 argument below
#: about -708 (a subnormal or zero result) takes a slow path in the CPU, and exp(-700) =
#: 1e-304 per clamped term is negligible beside the row's largest term (>= 1).
EXP_FLOOR = -700.0
#: Below this many kernel terms (n_query x n_train) scoring runs on the calling thread
#: alone unless ``threads`` is given: a call of a few milliseconds shared by two threads
#: pays for their meeting, and on a busy machine for a core the OS gave to another job.
#: On digits (360 x 1437 = 517,320 terms, 64-D) on a 2-core machine at load 11-12, 380
#: calls each, alternating: one thread best 10.6 ms, median 19.4; two threads best 9.8 ms,
#: median 23.3 (issue 18 saw one thread as fast as two there, at load 1-3).
ONE_THREAD_TERMS = 2_000_000
#: Query rows whose :func:`expansion_error_bound` exceeds this many nats (a bandwidth tiny
#: against the data's scale, or a query far from every training point) are computed by
#: explicit differences instead: every result is then within 1e-8 of the exact value.
EXPANSION_ERROR_MAX = 5e-9
#: Training rows per chunk: a chunk whose largest term lies more than
#: ``DROP_NATS + log n_train`` nats below its row's largest term so far is skipped
#: (its ``exp`` is never taken). Every skipped term is below ``e^-DROP_NATS / n_train``
#: times the row's largest, so all of them together change the row's log sum by less than
#: ``e^-DROP_NATS`` (8.5e-17: under the rounding of the float64 result).
CHUNK = 32
#: See :data:`CHUNK`.
DROP_NATS = 37.0
#: A block is summed densely (every term) when more than this fraction of its chunks is
#: kept: gathering the kept chunks then costs more than it saves.
_SPARSE_MAX = 0.3
#: A row's shift is raised when a block's largest shifted logit exceeds this: every term
#: then stays below e^600 (no sum of fewer than e^100 terms overflows), and a row whose
#: pilot shift is good (most rows) never pays for the extra pass.
_RAISE_ABOVE = 600.0


def locality_order(X: np.ndarray, axes: int = 4) -> np.ndarray:
    """A permutation of the rows of ``X`` (n, d) that puts nearby points next to each other:
    the Z-order (Morton) curve over the data's first ``min(d, axes)`` principal axes.

    Scoring visits the training points in chunks of :data:`CHUNK`; in this order a chunk's
    points lie close together, so a chunk far from a query is skipped as a whole; in the
    order the data came in, most chunks hold some point near every query and are kept.
    The sum is the same in any order; only the speed changes. Deterministic; O(n log n).

    Example:
        >>> order = locality_order(np.array([[3.0], [-1.0], [2.0], [0.0]])).tolist()
        >>> order in ([1, 3, 2, 0], [0, 2, 3, 1])  # along the line, either way
        True
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    if n < 2 or d == 0:
        return np.arange(n)
    Xc = X - X.mean(axis=0)
    # principal axes from at most 4096 evenly strided rows: cheap, and only the order
    # (not the result) depends on them. On one BLAS thread whatever the process allows:
    # this thin SVD (4096 x 784 at 784-D) took 0.68-0.74 s on one OpenBLAS thread and
    # 12.7-17.1 s on two on a loaded 2-core machine (each step waits for the thread the
    # OS put aside).
    with threadpool_limits(limits=1, user_api="blas"):
        _, _, vt = np.linalg.svd(Xc[::max(1, n // 4096)], full_matrices=False)
    P = Xc @ vt[:min(d, axes)].T
    bits = min(20, 60 // P.shape[1])  # cells per axis: 2^bits (exact in float64)
    lo, span = P.min(axis=0), np.ptp(P, axis=0)
    levels = np.floor((P - lo) / np.where(span > 0, span, 1.0) * 2.0 ** bits)
    cells = np.minimum(levels, 2.0 ** bits - 1).astype(np.uint64)
    code = np.zeros(n, dtype=np.uint64)
    one = np.uint64(1)
    for b in range(bits - 1, -1, -1):  # interleave the bits, most significant first
        for j in range(P.shape[1]):
            code = (code << one) | ((cells[:, j] >> np.uint64(b)) & one)
    return np.argsort(code, kind="stable")


#: The last column of a padding row of :func:`augment_train`: the query side's last column
#: is a scale s < 0 (never 0), so the padding row's logit is s * inf = -inf whatever the
#: bandwidth, and its term is exp(EXP_FLOOR) = 1e-304 (a finite stand-in such as 1e300 is
#: not far enough once h exceeds ~1e150: s * 1e300 is then of order 1).
_PAD_NORM = math.inf


def augment_train(train: np.ndarray, axes: int = 4) -> torch.Tensor:
    """The training side of the distance product: float64 rows ``[x, 1, ||x||^2]`` in
    :func:`locality_order` (over ``axes`` principal axes), then padding rows
    ``[0, 0, inf]`` (kernel term 0) up to a multiple of :data:`CHUNK` rows.

    Example:
        >>> aug = augment_train(np.array([[1.0, 2.0]]))
        >>> aug.shape, aug[0].tolist()
        (torch.Size([32, 4]), [1.0, 2.0, 1.0, 5.0])
    """
    xt = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float64))
    n, d = xt.shape
    xt = xt[torch.from_numpy(locality_order(train, axes))]
    aug = torch.zeros((-(-n // CHUNK) * CHUNK, d + 2), dtype=torch.float64)
    aug[:n, :d] = xt
    aug[:n, d] = 1.0
    torch.sum(xt * xt, dim=1, out=aug[:n, d + 1])
    aug[n:, d + 1] = _PAD_NORM
    return aug


def _nearest(za: torch.Tensor, xa: torch.Tensor, buf: torch.Tensor, cb: int) -> torch.Tensor:
    """Per row of ``za = [-2 s z, 0, s]`` (s < 0): ``max_j s (||x_j||^2 - 2 z.x_j)`` over the
    rows of ``xa``, i.e. s times (the squared distance to the nearest of them minus
    ``||z||^2``)."""
    q = za.shape[0]
    acc = torch.full((q,), -math.inf, dtype=torch.float64)
    part = torch.empty(q, dtype=torch.float64)
    for c0 in range(0, xa.shape[0], cb):
        xb = xa[c0:c0 + cb]
        block = buf[:q * xb.shape[0]].view(q, xb.shape[0])
        torch.amax(torch.mm(za, xb.T, out=block), dim=1, out=part)
        torch.maximum(acc, part, out=acc)
    return acc


def _exp_sums(za: torch.Tensor, scales: Sequence[float], shifts: torch.Tensor,
              xa: torch.Tensor, buf: torch.Tensor, work: torch.Tensor | None,
              cb: int, exact_first: bool, n_train: int) -> torch.Tensor:
    """``sum_j exp(max(s (||x_j||^2 - 2 z.x_j) - shift, EXP_FLOOR))`` per query row and
    per scale s: shape (q, n_scales), over the training rows ``xa`` less the chunks
    skipped as negligible (:data:`CHUNK`).

    ``za`` (q, d + 2) is ``[-2 s z, -shift, s]`` for one scale (its shift column is kept
    up to date here) and ``[2 z, 0, -1]`` (s = -1) for several. ``shifts`` (q, n_scales) holds lower
    bounds of each row's largest logit; a shift is raised in place to a block's largest
    logit where that exceeds it by more than :data:`_RAISE_ABOVE` (the sum so far is
    rescaled), so no term overflows; with ``exact_first`` the shifts (zeros on entry) are
    set to the first block's largest logits instead. ``work`` (the size of ``buf``) is
    needed for more than one scale."""
    q, d = za.shape[0], za.shape[1] - 2
    n_s = len(scales)
    sums = torch.zeros((n_s, q), dtype=torch.float64)
    # each row's largest logit so far, relative to its shift: the nearest pilot point's
    # own term is 0 (-inf before the first block without a pilot)
    top = torch.full((n_s, q), -math.inf if exact_first else 0.0, dtype=torch.float64)
    drop = DROP_NATS + math.log(n_train)
    for c0 in range(0, xa.shape[0], cb):
        xb = xa[c0:c0 + cb]
        k = xb.shape[0]
        block = torch.mm(za, xb.T, out=buf[:q * k].view(q, k))
        for j, s in enumerate(scales):
            if n_s == 1:
                logits = block
            else:
                assert work is not None
                logits = torch.add(-shifts[:, j:j + 1], block, alpha=-float(s),
                                   out=work[:q * k].view(q, k))
            # the largest logit of each chunk and of each row
            chunk_top = torch.amax(logits.view(q, k // CHUNK, CHUNK), dim=2)
            part = torch.amax(chunk_top, dim=1)
            rise: torch.Tensor | None = None
            if c0 == 0 and exact_first:  # no pilot: the first block sets every shift
                rise = part
                top[j] = 0.0
            elif bool((part > _RAISE_ABOVE).any()):
                # the block holds terms far above the shift (the pilot missed the nearest
                # points): raise those rows' shifts to the block's largest logit
                rise = torch.where(part > _RAISE_ABOVE, part, 0.0)
                sums[j].mul_(torch.exp(-rise))
                top[j] = torch.maximum(top[j] - rise, part - rise)
            else:
                torch.maximum(top[j], part, out=top[j])
            if rise is not None:
                shifts[:, j].add_(rise)
                if n_s == 1:
                    za[:, d] = -shifts[:, 0]
            sums[j].add_(_block_sum(logits, chunk_top, top[j] - drop, rise))
    return sums.T


def _block_sum(logits: torch.Tensor, chunk_top: torch.Tensor, floor: torch.Tensor,
               rise: torch.Tensor | None) -> torch.Tensor:
    """``sum exp(max(logit - rise, EXP_FLOOR))`` per row of ``logits`` (q, k), skipping the
    whole chunks (largest logits ``chunk_top``, (q, k / CHUNK)) whose largest ``logit -
    rise`` is at most the row's ``floor``; ``rise`` (q,) is the row's shift raise (None: 0).
    May overwrite ``logits``."""
    q, k = logits.shape
    kept = chunk_top > (floor if rise is None else floor + rise)[:, None]
    n_kept = int(torch.count_nonzero(kept))
    if n_kept > _SPARSE_MAX * kept.numel():  # dense: every term
        if rise is not None:
            logits.sub_(rise[:, None])
        return torch.sum(logits.clamp_(min=EXP_FLOOR).exp_(), dim=1)
    out = torch.zeros(q, dtype=logits.dtype)
    if n_kept:
        rows, cols = kept.nonzero().unbind(1)
        chunks = logits.view(q, k // CHUNK, CHUNK)[rows, cols]  # a copy
        if rise is not None:
            chunks.sub_(rise[rows, None])
        out.index_add_(0, rows, torch.sum(chunks.clamp_(min=EXP_FLOOR).exp_(), dim=1))
    return out


def _usable_bandwidth(h: Any) -> bool:
    """Whether the scale ``s = -1/(2 h^2)`` of ``h`` is a finite negative float (about
    1e-154 <= h <= 1e154): s = 0 or -inf would make every logit 0 or -inf."""
    try:
        h = float(h)
    except (TypeError, ValueError, OverflowError):
        return False
    hh = h * h  # 0 below ~1.5e-162: no scale at all
    return 0.0 < h < math.inf and hh > 0.0 and -math.inf < -0.5 / hh < 0.0


def expansion_error_bound(Z: np.ndarray, train: np.ndarray, scales: Sequence[float]
                          ) -> np.ndarray:
    """Per row of ``Z``: a bound (nats) on the rounding error of its log kernel sums when
    computed through the expansion ``||z - x||^2 = ||z||^2 + ||x||^2 - 2 z.x``.

    Each logit is a dot product of d + 2 terms whose magnitudes add up to at most
    ``2 |s| (||z|| + R)^2`` (R: the largest ``||x||``; the shift is bounded the same way),
    so its float64 rounding error is at most ``(d + 2) eps`` times that (Higham, *Accuracy
    and Stability of Numerical Algorithms*, 2002, section 3.1), and forming ``||x||^2``, the
    query side and the final ``s ||z||^2`` add less than ``(d + 4) eps |s| (||z|| + R)^2``:
    the bound is ``3 (d + 4) eps |s| (||z|| + R)^2`` with the largest |s| given. An error
    of at most delta in every logit moves a log sum by at most delta.

    Example:
        >>> X = np.array([[1.0, 0.0], [-1.0, 0.0]])
        >>> expansion_error_bound(np.array([[0.0, 0.0], [1e6, 0.0]]), X, [-0.5]) < 1e-8
        array([ True, False])
    """
    Z = np.asarray(Z, dtype=np.float64)
    train = np.asarray(train, dtype=np.float64)
    return _error_bound(np.einsum("ij,ij->i", Z, Z),
                        float(np.max(np.einsum("ij,ij->i", train, train), initial=0.0)),
                        Z.shape[1], scales)


def _error_bound(z_sq: np.ndarray, radius_sq: float, d: int, scales: Sequence[float]
                 ) -> np.ndarray:
    """:func:`expansion_error_bound` from the queries' squared norms and the largest
    squared norm of a training point (scoring has both at hand)."""
    s_max = max(abs(float(s)) for s in scales)
    reach = (np.sqrt(z_sq) + math.sqrt(radius_sq)) ** 2
    return 3.0 * (d + 4) * np.finfo(np.float64).eps * s_max * reach


def magnitude_rounding(size: np.ndarray, d: int, n_train: int, direct: np.ndarray | bool
                       ) -> np.ndarray:
    """The rounding that no tolerance can absorb, as it grows with the log sums' size
    (``size``: each row's ``|log sum|`` or a bound on it): every row's result is a float64
    within ``eps |value|`` of its computed value (twice that, with the last addition of
    ``s ||z||^2``), and a row summed by explicit
    differences has each logit ``s ||z - x||^2`` to ``(d + 2) eps`` of its size; the
    logits that matter lie within ``log n + DROP_NATS`` of the largest, itself within
    ``log n`` of the value. Far from all the data (a logit of -5e9 is 1e5 bandwidths
    away) these reach 1e-6 nats, where a fixed bound would not hold."""
    eps = float(np.finfo(np.float64).eps)
    logits = (d + 3) * 4.0 * eps * (size + 2.0 * math.log(n_train) + DROP_NATS)
    return 2.0 * eps * size + np.where(direct, logits, 0.0)


def _workers_for(threads: int | None) -> int:
    """Threads :func:`log_kernel_sums` uses: ``threads`` (at least 1), or PyTorch's now."""
    return torch.get_num_threads() if threads is None else max(1, int(threads))


def _direct_sums(zq: torch.Tensor, train: np.ndarray, scales: Sequence[float],
                 block_bytes: int) -> np.ndarray:
    """The log kernel sums of the query rows ``zq`` by explicit differences (no expansion):
    for the rows where :func:`expansion_error_bound` exceeds :data:`EXPANSION_ERROR_MAX`.
    Slower than the expansion (no matrix product, no skipping), blocked the same way."""
    xt = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float64))
    q, m = zq.shape[0], xt.shape[0]
    kb = min(m, BLOCK_TRAIN)
    rb = max(1, block_bytes // (8 * kb))
    acc = torch.full((len(scales), q), -math.inf, dtype=torch.float64)
    for r0 in range(0, q, rb):
        zb = zq[r0:r0 + rb]
        for c0 in range(0, m, kb):
            # differences, not the expansion: the squared distance to relative rounding
            sq = torch.cdist(zb, xt[c0:c0 + kb], compute_mode="donot_use_mm_for_euclid_dist")
            sq.square_()
            for j, s in enumerate(scales):
                part = torch.logsumexp(sq * float(s), dim=1)
                torch.logaddexp(acc[j, r0:r0 + rb], part, out=acc[j, r0:r0 + rb])
    return acc.T.numpy()


def log_kernel_sums(Z: np.ndarray, train: np.ndarray, bandwidths: Sequence[float], *,
                    train_aug: torch.Tensor | None = None, block_bytes: int = BLOCK_BYTES,
                    block_rows: int | None = None, block_train: int | None = None,
                    threads: int | None = None) -> np.ndarray:
    """``log sum_i exp(-||z - x_i||^2 / (2 h^2))`` for each row z of ``Z`` and each h.

    Returns a float64 array (n_query, n_bandwidths), exact to rounding: within
    1e-8 nats of the exact value, plus the float64 rounding of the value itself (rows
    whose :func:`expansion_error_bound` is too large go to explicit differences; see the
    module docstring). ``train_aug`` is :func:`augment_train` of ``train``, when already built.
    Blocks have ``block_train`` training rows (default ``min(BLOCK_TRAIN, n_train)``,
    rounded up to a multiple of :data:`CHUNK`) and ``block_rows`` query rows (default: as
    many as fit in ``block_bytes``).

    Threads: ``threads`` worker threads (default ``torch.get_num_threads()``, but one below
    :data:`ONE_THREAD_TERMS` kernel terms) take row blocks in turn, each running
    single-threaded PyTorch; the caller's thread count is left as it was.

    Memory: per working thread (the caller's included) one float64 block buffer of
    ``block_rows x block_train`` values (at most ``block_bytes``, 4 MiB by default; a
    second one with several bandwidths), kept by the thread for the next call, plus up to
    30% of a block while the kept chunks are gathered (:data:`_SPARSE_MAX`),
    O(block_rows x (d + n_bandwidths)) for the query side; O(n_query x n_bandwidths) for
    the result, and ``train_aug`` (n_train x (d + 2) values) when not given (rows routed to
    explicit differences use two blocks of at most ``block_bytes`` in the calling thread):
    nothing grows with n_query x n_train. Every block of training points is visited once
    per row block for all bandwidths.

    Example:
        >>> import numpy as np
        >>> Z, X = np.zeros((1, 2)), np.array([[0.0, 0.0], [3.0, 4.0]])
        >>> log_kernel_sums(Z, X, [1.0, 5.0]).round(6).tolist()  # log(1 + e^-12.5), log(1 + e^-0.5)
        [[4e-06, 0.474077]]
    """
    if block_bytes < 8 or (block_rows is not None and block_rows < 1) or (
            block_train is not None and block_train < 1):
        raise ValueError("log_kernel_sums: block sizes must be >= 1")
    zt = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float64))
    xa = augment_train(train) if train_aug is None else train_aug
    n, d = zt.shape
    m = xa.shape[0]
    bad = [h for h in bandwidths if not _usable_bandwidth(h)]
    if bad:
        raise ValueError(f"log_kernel_sums: bandwidth {bad[0]!r} is not a positive float "
                         f"whose -1/(2 h^2) is finite and nonzero (h in ~[1e-154, 1e154])")
    scales = [-0.5 / (float(h) * float(h)) for h in bandwidths]
    out = np.empty((n, len(scales)), dtype=np.float64)
    if n == 0:
        return out
    zn = zt.numpy()
    z_sq = np.einsum("ij,ij->i", zn, zn)
    # the largest ||x||^2: the augmented rows' last column, padding rows (inf) left out
    radius_sq = float(xa[:len(train), d + 1].max()) if len(train) else 0.0
    direct = _error_bound(z_sq, radius_sq, d, scales) > EXPANSION_ERROR_MAX
    if direct.any():  # these rows by explicit differences, the others as usual
        before = torch.get_num_threads()
        try:
            torch.set_num_threads(_workers_for(threads))
            out[direct] = _direct_sums(zt[torch.from_numpy(direct)], train, scales,
                                       block_bytes)
        finally:
            torch.set_num_threads(before)
        if not direct.all():
            out[~direct] = log_kernel_sums(
                zn[~direct], train, bandwidths, train_aug=xa, block_bytes=block_bytes,
                block_rows=block_rows, block_train=block_train, threads=threads)
        return out
    workers = 1 if threads is None and n * m < ONE_THREAD_TERMS else _workers_for(threads)
    cb = min(-(-(block_train or BLOCK_TRAIN) // CHUNK) * CHUNK, m)
    rb = block_rows or max(1, block_bytes // (8 * cb))
    if workers > 1:
        # 2 row blocks per worker, so that a worker the OS holds back leaves its second
        # block to the others; 1 where the blocks would get small (under 128 rows a
        # block's matrix product is too small to run at the full rate)
        per_worker = 2 if n >= 2 * workers * 128 else 1
        rb = min(rb, -(-n // (per_worker * workers)))
    rb = min(rb, n)
    # with one training block, that block's own maxima are the exact shifts: no pilot
    pilot = xa[::max(1, m // PILOT_POINTS)] if m > cb else None
    starts = iter(range(0, n, rb))
    lock = threading.Lock()
    n_train = len(train)

    def work() -> None:
        buffers = _buffers(rb * cb, rb * (d + 2), len(scales) > 1)
        while True:
            with lock:
                r0 = next(starts, None)
            if r0 is None:
                return
            out[r0:r0 + rb] = _row_block(zt[r0:r0 + rb], xa, pilot, scales, buffers, cb,
                                         n_train)

    if n <= rb:
        workers = 1  # one block: nothing to share
    # each worker thread runs single-threaded PyTorch on whole row blocks: no barrier per
    # operation, so a thread held back by a busy machine delays only its own blocks
    run_workers(work, workers)
    # the rows' own ||z||^2 term, left out of the product
    out += z_sq[:, None] * np.asarray(scales)
    return out


class _Buffers:
    """Block buffers of one thread: the block, a second block for several bandwidths, and
    the query side ``[-2 s z, -shift, s]``; flat, viewed at the sizes of each call."""

    def __init__(self, block: int, query: int, second: bool) -> None:
        self.block = torch.empty(block, dtype=torch.float64)
        self.work = torch.empty(block, dtype=torch.float64) if second else None
        self.za = torch.empty(query, dtype=torch.float64)

    def fits(self, block: int, query: int, second: bool) -> bool:
        return (self.block.numel() >= block and self.za.numel() >= query
                and (not second or (self.work is not None and self.work.numel() >= block)))


_LOCAL = threading.local()


def _buffers(block: int, query: int, second: bool) -> _Buffers:
    """This thread's buffers, kept from call to call: a fresh multi-MiB buffer per call
    would cost its page faults every time (glibc maps large blocks anew)."""
    bufs: _Buffers | None = getattr(_LOCAL, "buffers", None)
    if bufs is None or not bufs.fits(block, query, second):
        _LOCAL.buffers = None  # the old ones go before the new ones come
        bufs = _LOCAL.buffers = _Buffers(block, query, second)
    return bufs


def _row_block(zb: torch.Tensor, xa: torch.Tensor, pilot: torch.Tensor | None,
               scales: list[float], buffers: _Buffers, cb: int, n_train: int) -> np.ndarray:
    """The log kernel sums of the query rows ``zb`` (q, d) for every scale, less each row's
    ``s ||z||^2`` term: (q, n_scales)."""
    q, d = zb.shape
    # [-2 s z, 0, s] . [x, 1, ||x||^2] = s (||x||^2 - 2 z.x) = s (||z - x||^2 - ||z||^2);
    # with several scales s = -1 here and each scale is applied to the product
    s0 = scales[0] if len(scales) == 1 else -1.0
    za = buffers.za[:q * (d + 2)].view(q, d + 2)
    torch.mul(zb, -2.0 * s0, out=za[:, :d])
    za[:, d:] = torch.tensor([0.0, s0], dtype=torch.float64)
    if pilot is None:
        shifts = torch.zeros((q, len(scales)), dtype=torch.float64)
    else:  # the pilot's largest logit per row and scale (s < 0: at the nearest pilot point)
        nearest = _nearest(za, pilot, buffers.block, cb)
        shifts = (nearest[:, None] if len(scales) == 1
                  else -torch.outer(nearest, torch.tensor(scales, dtype=torch.float64)))
        if len(scales) == 1:
            za[:, d] = -nearest
    sums = _exp_sums(za, scales, shifts, xa, buffers.block, buffers.work, cb, pilot is None,
                     n_train)
    return torch.log_(sums).add_(shifts).numpy()


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

    Three ways to score, chosen by ``algorithm``: ``'exact'`` sums every kernel term
    (:func:`log_kernel_sums`, exact to rounding); ``'tree'`` sums the terms of the training
    points near each query (found with a k-d tree, or by boxes for dense blocks of queries)
    and bounds the others, so each log-density is within
    ``tolerance`` nats of the exact one, a bound computed per point
    (:mod:`densbench.estimators.kde_tree`); ``'grid'`` (1-D and 2-D data) interpolates
    the kernel sum from a lattice a tenth of a bandwidth fine, with a certified bound per
    point too (:mod:`densbench.estimators.kde_grid`; rows it cannot certify within
    ``tolerance``, far from the data, go to the tree path, and where the lattice would
    be too large, data spread over thousands of bandwidths, every row does:
    ``algorithm_`` then says ``'tree'``). ``'auto'`` (the default) takes the lattice
    from :data:`TREE_MIN_TRAIN` (50,000) training points in 1-D and 2-D, the tree from
    that many in at most :data:`TREE_MAX_DIM` (8) dimensions (where the exact sum's
    ``n_query x n_train`` terms take minutes to hours), and the exact path below.
    ``algorithm_`` says which path the fit chose;
    ``diagnostics`` gives per test point the certified error bound (``kde_error_bound``,
    nats: its mean bounds the error of the mean test log-likelihood; on the exact path the
    expansion's rounding bound) and the fraction of kernel terms summed one by one
    (``kde_terms_summed``: 1 on the exact path, 0 for rows from the lattice).

    The exact path covers all query rows
    in its own blocked loop: memory is bounded by one block buffer of :data:`BLOCK_BYTES`
    (4 MiB; two during 'cv' selection) per PyTorch thread, plus the stored training data
    (``train_``, n x d, and n x (d + 2) float64 values for the distance product) and
    O(n_query) for the result, whatever the number of query or training rows
    (``tests/benchmarks/test_bench_memory.py`` scores a million training points in a
    child process with a memory limit). Samples are a uniformly chosen training point plus
    ``N(0, h^2 I)``.

    On the tree and lattice paths, ``'cv'`` scores the coarse grid on at most
    :data:`CV_ROWS_COARSE` (2,000) evenly strided validation rows and the fine grid (with
    the coarse best and its neighbours) on at most :data:`CV_ROWS_TREE` (20,000), and
    chooses among the latter (each within ``tolerance`` of its exact value; a lattice per
    bandwidth); ``cv_coarse_`` keeps the coarse scores. There the coarse grid is scanned
    from its narrowest bandwidth up and stops once :data:`CV_STOP_AFTER` bandwidths in a
    row score below the best so far by more than :data:`CV_STOP_Z` paired standard errors:
    the widest bandwidths cost the most (every training point is near every query) and,
    past a clear decline, oversmoothing only loses more (a validation curve with a second,
    wider peak behind such a decline would be missed).

    Parameters:
        bandwidth: a float > 0, or one of ``'scott'``, ``'silverman'``, ``'cv'``.
        algorithm: ``'auto'``, ``'exact'``, ``'tree'`` or ``'grid'`` (see above).
        tolerance: the tree and lattice paths' largest error per log-density, in nats
            (> 0).
        random_state: unused (the fit is deterministic); kept for a uniform interface.

    Attributes:
        bandwidth_: the bandwidth h used (float), in the units of ``X / data_scale_``
            (``data_scale_`` is 1 unless the data's magnitude is extreme).
        center_: (d,) training mean; train_: (n, d) the training data minus ``center_``.
        selection_: for 'cv', list of (h, mean validation log-likelihood), sorted by h
            (on the tree and lattice paths with more than :data:`CV_ROWS_COARSE`
            validation rows: the fine stage's; ``cv_coarse_`` the coarse stage's, else
            empty).
        algorithm_: ``'exact'``, ``'tree'`` or ``'grid'``, the path that scores.

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

    #: Query rows per distance block (None: as many as fit in :data:`BLOCK_BYTES`).
    block_rows: ClassVar[int | None] = None
    #: Training rows per distance block (None: ``min(BLOCK_TRAIN, n_train)``).
    block_train: ClassVar[int | None] = None
    # the blocked loop of log_kernel_sums bounds the memory: the base class's batches of
    # rows would only add calls (and fresh buffers) per 4096 rows
    score_batch_rows: ClassVar[int | None] = None

    _parameter_constraints: ClassVar[ParamConstraints] = {
        "bandwidth": [Satisfies(lambda b: is_real(b) and _usable_bandwidth(b),
                                "> 0 (at most ~1e154, at least ~1e-154)"),
                      Options(*_RULES)],
        "algorithm": [Options(*_ALGORITHMS)],
        "tolerance": [Satisfies(lambda t: is_real(t) and 0.0 < float(t) < math.inf,
                                "> 0 (nats)")],
    }

    def __init__(self, *, bandwidth: float | str = "scott", algorithm: str = "auto",
                 tolerance: float = 1e-6, random_state: int = 0) -> None:
        self.bandwidth = bandwidth
        self.algorithm = algorithm
        self.tolerance = tolerance
        self.random_state = random_state

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"bandwidth": "scott"}

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        n, d = X.shape
        if self.bandwidth == "cv" and X_val is None:
            raise ValueError(f"{self.name}: bandwidth='cv' needs X_val")
        self.center_ = X.mean(axis=0)
        self.train_ = X - self.center_
        if self.algorithm == "grid" and d > GRID_MAX_DIM:
            raise ValueError(f"{self.name}: algorithm='grid' works in at most {GRID_MAX_DIM} "
                             f"dimensions; the data have {d}: use 'tree' or 'auto'")
        path = self.algorithm if self.algorithm != "auto" else (
            "grid" if n >= TREE_MIN_TRAIN and d <= GRID_MAX_DIM else
            "tree" if n >= TREE_MIN_TRAIN and d <= TREE_MAX_DIM else "exact")
        self._bounded: tuple[bytes, Any] | None = None
        # the lattice of the chosen bandwidth and the tree's parts, built when first needed
        self._grids: dict[float, Any] = {}
        self._tree_parts: tuple[Any, Any, Any] | None = None
        self._train_aug: torch.Tensor | None = None
        if path == "exact":
            # [x, 1, ||x||^2] rows for the distance product, in locality order, built once
            self._train_aug = augment_train(self.train_)
        self.algorithm_ = path
        self.selection_: list[tuple[float, float]] = []
        self.cv_coarse_: list[tuple[float, float]] = []
        if not isinstance(self.bandwidth, str):
            # a given bandwidth is a length in the units of the data given to fit
            self.bandwidth_ = float(self.bandwidth) / self.data_scale_
            if not _usable_bandwidth(self.bandwidth_):
                raise ValueError(f"{self.name}: bandwidth={self.bandwidth!r} is out of reach "
                                 f"for data of magnitude ~{self.data_scale_:.3g}: the kernel "
                                 f"would be 0 or flat everywhere; give a bandwidth nearer "
                                 f"the data's spread, or 'scott'")
            self._settle_path()
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
        self._settle_path()

    def _settle_path(self) -> None:
        """On the lattice path, build the chosen bandwidth's lattice; where it does not
        fit (data spread over too many bandwidths) every row goes to the tree path."""
        if self.algorithm_ == "grid":
            grid = self._grid(self.bandwidth_)
            if grid is None:
                self.algorithm_ = "tree"
        if self.algorithm_ == "tree":
            self._tree()  # built at fit, as a fit's cost

    def _grid(self, h: float, keep: bool = True) -> Any:
        """The lattice of bandwidth h (None where it would be too large), kept for the
        next call unless ``keep`` is false ('cv' builds one per bandwidth tried: keeping
        them all would hold dozens of lattices)."""
        if h in self._grids:
            return self._grids[h]
        from densbench.estimators.kde_grid import grid_for

        grid = grid_for(self.train_, h)
        if keep:
            self._grids = {h: grid}
        return grid

    def _tree(self) -> tuple[Any, Any, Any]:
        """The tree path's augmented training rows, leaves and k-d tree, built once."""
        if self._tree_parts is None:
            # imported here: kde_tree builds on this module's blocked sums
            from scipy.spatial import cKDTree

            from densbench.estimators.kde_tree import ORDER_AXES, Leaves

            aug = augment_train(self.train_, ORDER_AXES)
            self._tree_parts = (aug, Leaves(aug, len(self.train_)), cKDTree(self.train_))
        return self._tree_parts

    def _select(self, X_val: np.ndarray, scott: float, silverman: float) -> float:
        """'cv': coarse grid (with Scott and Silverman), then a finer grid around the best.
        On the tree and lattice paths the coarse grid is scored on at most
        :data:`CV_ROWS_COARSE` validation rows and the best point, its neighbours and the
        fine grid on at most :data:`CV_ROWS_TREE`; the choice is made among the latter."""
        rows = X_val
        coarse_rows = X_val
        if self.algorithm_ in ("tree", "grid"):
            rows = X_val[::max(1, -(-len(X_val) // CV_ROWS_TREE))]
            coarse_rows = rows[::max(1, -(-len(rows) // CV_ROWS_COARSE))]
        two_stage = len(coarse_rows) < len(rows)

        def evaluate(tried: dict[float, float], X: np.ndarray, hs: Sequence[float]) -> None:
            hs = np.array([h for h in hs if float(h) not in tried])
            if hs.size:
                for h, s in zip(hs, self._mean_loglik(X, hs), strict=True):
                    tried[float(h)] = float(s)

        coarse: dict[float, float] = {}
        grid = np.concatenate([scott * _CV_GRID, [scott, silverman]])
        if two_stage:
            self._scan(coarse, coarse_rows, sorted(set(map(float, grid))))
        else:
            evaluate(coarse, coarse_rows, grid)
        hs = sorted(coarse)
        i = max(range(len(hs)), key=lambda j: (coarse[hs[j]], -j))
        lo, hi = hs[max(i - 1, 0)], hs[min(i + 1, len(hs) - 1)]
        final = {} if two_stage else coarse
        if two_stage:
            evaluate(final, rows, [lo, hs[i], hi])
        if hi > lo:
            evaluate(final, rows, np.geomspace(lo, hi, _CV_FINE))
        self.selection_ = sorted(final.items())
        self.cv_coarse_ = sorted(coarse.items()) if two_stage else []
        # the best score; the smallest such h on ties
        return max(self.selection_, key=lambda hs_: (hs_[1], -hs_[0]))[0]

    def _scan(self, tried: dict[float, float], X: np.ndarray, hs: list[float]) -> None:
        """Score ``hs`` (ascending) on ``X`` one by one into ``tried``, stopping after
        :data:`CV_STOP_AFTER` in a row that are each below the best so far by more than
        :data:`CV_STOP_Z` paired standard errors."""
        from densbench.metrics.base import mean_se

        best: np.ndarray | None = None
        below = 0
        for h in hs:
            ll = self._row_logliks(X, np.array([h]))[:, 0]
            tried[h] = float(np.mean(ll))
            if best is None or tried[h] > float(np.mean(best)):
                best, below = ll, 0
                continue
            gap, se = mean_se(best - ll)  # paired over the rows
            below = below + 1 if gap > CV_STOP_Z * se else 0
            if below >= CV_STOP_AFTER:
                return

    def _row_logliks(self, X: np.ndarray, hs: np.ndarray) -> np.ndarray:
        """Log-likelihood of each row of ``X`` (in the fit's units) at each bandwidth of
        ``hs``: (len(X), len(hs))."""
        n, d = self.train_.shape
        if self.algorithm_ in ("tree", "grid"):
            sums = np.column_stack([self._bounded_sums(X, float(h), keep=False).values
                                    for h in hs])
        else:
            sums = self._log_kernel_sums(X, list(hs))
        return sums - (math.log(n) + 0.5 * d * np.log(2.0 * math.pi * hs ** 2))

    def _mean_loglik(self, X: np.ndarray, hs: np.ndarray) -> np.ndarray:
        return np.mean(self._row_logliks(X, hs), axis=0)

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        n, d = self.train_.shape
        h = self.bandwidth_
        if self.algorithm_ in ("tree", "grid"):
            bounded = self._bounded_sums(X, h)
            # kept for diagnostics on the same rows (the runner asks right after scoring)
            self._bounded = (self._fingerprint(X), bounded)
            sums = bounded.values
        else:
            sums = self._log_kernel_sums(X, [h])[:, 0]
        return sums - math.log(n) - 0.5 * d * math.log(2.0 * math.pi * h * h)

    def _log_kernel_sums(self, X: np.ndarray, hs: list[float]) -> np.ndarray:
        return log_kernel_sums(X - self.center_, self.train_, hs, train_aug=self._train_aug,
                               block_rows=self.block_rows, block_train=self.block_train)

    def _bounded_sums(self, X: np.ndarray, h: float, keep: bool = True) -> Any:
        """Log kernel sums within ``tolerance``, each with its certified bound: from the
        lattice where it reaches (``algorithm_ == 'grid'``), by the tree path elsewhere."""
        from densbench.estimators.kde_tree import BoundedSums, bounded_log_kernel_sums

        Z = X - self.center_
        tol = float(self.tolerance)
        grid = self._grid(h, keep) if self.algorithm_ == "grid" else None
        if grid is not None:
            values, bounds, ok = grid.log_sums(Z)
            # with the rounding the log adds; rows whose bound exceeds the tolerance: the tree
            bounds += magnitude_rounding(np.abs(values), Z.shape[1], len(self.train_), False)
            ok &= bounds <= tol
            summed = np.zeros(len(Z))  # no kernel term summed one by one
        else:
            values, bounds, summed = np.empty(len(Z)), np.empty(len(Z)), np.empty(len(Z))
            ok = np.zeros(len(Z), dtype=bool)
        if not ok.all():
            aug, leaves, kdtree = self._tree()
            rest = bounded_log_kernel_sums(Z[~ok], self.train_, h, tol, train_aug=aug,
                                           leaves=leaves, kdtree=kdtree)
            values[~ok], bounds[~ok], summed[~ok] = rest
        return BoundedSums(values, bounds, summed)

    @staticmethod
    def _fingerprint(X: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(X).tobytes(), digest_size=16,
                               person=str(X.shape).encode()[:16]).digest()

    def _diagnostics(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        """Per row: the certified bound on the error of its log-density (nats) and the
        fraction of kernel terms summed (see the class docstring)."""
        if self.algorithm_ in ("tree", "grid"):
            key = self._fingerprint(X)
            if self._bounded is None or self._bounded[0] != key:
                self._bounded = (key, self._bounded_sums(X, self.bandwidth_))
            bounded = self._bounded[1]
            size = np.abs(bounded.values)
            return {"kde_error_bound": (bounded.bounds + self._density_rounding(size), "nats"),
                    "kde_terms_summed": (bounded.summed, "fraction")}
        n, d = self.train_.shape
        Z = X - self.center_
        scale = -0.5 / self.bandwidth_ ** 2
        rounding = expansion_error_bound(Z, self.train_, [scale])
        # rows past EXPANSION_ERROR_MAX go to explicit differences: within 1e-8 and what
        # grows with the logits' size, |log sum| <= max(log n, |s| (||z|| + R)^2)
        direct = rounding > EXPANSION_ERROR_MAX
        reach = (np.linalg.norm(Z, axis=1)
                 + np.sqrt(np.max(np.einsum("ij,ij->i", self.train_, self.train_)))) ** 2
        size = np.maximum(math.log(n), -scale * reach)
        bound = (np.where(direct, 1e-8, rounding) + math.exp(-DROP_NATS)
                 + magnitude_rounding(size, d, n, direct))
        return {"kde_error_bound": (bound + self._density_rounding(size), "nats"),
                "kde_terms_summed": (np.ones(len(X)), "fraction")}

    def _density_rounding(self, size: np.ndarray) -> np.ndarray:
        """Rounding of the log density ``log sum - log n - d/2 log(2 pi h^2)`` beyond that
        of the log sum (``size``: its size): the two subtractions, each to eps."""
        n, d = self.train_.shape
        c = abs(math.log(n) + 0.5 * d * math.log(2.0 * math.pi * self.bandwidth_ ** 2))
        return 2.0 * float(np.finfo(np.float64).eps) * (size + 2.0 * c)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        idx = rng.integers(0, self.train_.shape[0], size=n)
        eps = rng.standard_normal((n, self.n_features_in_))
        return self.center_ + self.train_[idx] + self.bandwidth_ * eps

    def _n_parameters(self) -> int:
        return int(self.train_.size) + 1
