"""The exact engine of the Gaussian KDE: every kernel term summed, to rounding, in bounded
memory.

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

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from densbench.parallel import run_workers

__all__ = ["BLOCK_BYTES", "BLOCK_TRAIN", "CHUNK", "DROP_NATS", "EXPANSION_ERROR_MAX",
           "EXP_FLOOR", "ONE_THREAD_TERMS", "PILOT_POINTS", "augment_train",
           "expansion_error_bound", "locality_order", "log_kernel_sums", "magnitude_rounding",
           "usable_bandwidth"]

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
    # this thin SVD's steps are small, and on a loaded machine each would wait for a
    # second thread the OS put aside.
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


def usable_bandwidth(h: Any) -> bool:
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
    return expansion_bound_of_norms(np.einsum("ij,ij->i", Z, Z),
                        float(np.max(np.einsum("ij,ij->i", train, train), initial=0.0)),
                        Z.shape[1], scales)


def expansion_bound_of_norms(z_sq: np.ndarray, radius_sq: float, d: int, scales: Sequence[float]
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


def workers_for(threads: int | None) -> int:
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
    _check_blocks(block_bytes, block_rows, block_train)
    zt = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float64))
    xa = augment_train(train) if train_aug is None else train_aug
    n, d = zt.shape
    scales = _scales(bandwidths)
    out = np.empty((n, len(scales)), dtype=np.float64)
    if n == 0:
        return out
    zn = zt.numpy()
    z_sq = np.einsum("ij,ij->i", zn, zn)
    # the largest ||x||^2: the augmented rows' last column, padding rows (inf) left out
    radius_sq = float(xa[:len(train), d + 1].max()) if len(train) else 0.0
    direct = expansion_bound_of_norms(z_sq, radius_sq, d, scales) > EXPANSION_ERROR_MAX
    if direct.any():  # these rows by explicit differences, the others as usual
        out[direct] = _direct_rows(zt[torch.from_numpy(direct)], train, scales, block_bytes,
                                   threads)
        if not direct.all():
            out[~direct] = log_kernel_sums(
                zn[~direct], train, bandwidths, train_aug=xa, block_bytes=block_bytes,
                block_rows=block_rows, block_train=block_train, threads=threads)
        return out
    plan = _row_blocks(n, xa.shape[0], threads, block_bytes, block_rows, block_train)
    _sum_row_blocks(zt, xa, scales, out, len(train), *plan)
    # the rows' own ||z||^2 term, left out of the product
    out += z_sq[:, None] * np.asarray(scales)
    return out


def _check_blocks(block_bytes: int, block_rows: int | None, block_train: int | None
                  ) -> None:
    """An error for a block size below 1 (or a buffer below one float64)."""
    if block_bytes < 8 or (block_rows is not None and block_rows < 1) or (
            block_train is not None and block_train < 1):
        raise ValueError("log_kernel_sums: block sizes must be >= 1")


def _scales(bandwidths: Sequence[float]) -> list[float]:
    """The scales ``s = -1 / (2 h^2)`` of ``bandwidths``; an error for a bandwidth whose
    scale is 0 or infinite."""
    bad = [h for h in bandwidths if not usable_bandwidth(h)]
    if bad:
        raise ValueError(f"log_kernel_sums: bandwidth {bad[0]!r} is not a positive float "
                         f"whose -1/(2 h^2) is finite and nonzero (h in ~[1e-154, 1e154])")
    return [-0.5 / (float(h) * float(h)) for h in bandwidths]


def _direct_rows(zq: torch.Tensor, train: np.ndarray, scales: Sequence[float],
                 block_bytes: int, threads: int | None) -> np.ndarray:
    """:func:`_direct_sums` on ``threads`` PyTorch threads, the caller's count restored."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(workers_for(threads))
        return _direct_sums(zq, train, scales, block_bytes)
    finally:
        torch.set_num_threads(before)


def _row_blocks(n: int, m: int, threads: int | None, block_bytes: int,
                block_rows: int | None, block_train: int | None) -> tuple[int, int, int]:
    """For ``n`` query rows against ``m`` augmented training rows: the worker threads,
    the training rows per block and the query rows per block."""
    workers = 1 if threads is None and n * m < ONE_THREAD_TERMS else workers_for(threads)
    cb = min(-(-(block_train or BLOCK_TRAIN) // CHUNK) * CHUNK, m)
    rb = block_rows or max(1, block_bytes // (8 * cb))
    if workers > 1:
        # 2 row blocks per worker, so that a worker the OS holds back leaves its second
        # block to the others; 1 where the blocks would get small (under 128 rows a
        # block's matrix product is too small to run at the full rate)
        per_worker = 2 if n >= 2 * workers * 128 else 1
        rb = min(rb, -(-n // (per_worker * workers)))
    rb = min(rb, n)
    if n <= rb:
        workers = 1  # one block: nothing to share
    return workers, cb, rb


def _sum_row_blocks(zt: torch.Tensor, xa: torch.Tensor, scales: list[float], out: np.ndarray,
                    n_train: int, workers: int, cb: int, rb: int) -> None:
    """Fill ``out`` with :func:`row_block_sums` of each block of ``rb`` rows of ``zt``, the
    blocks taken in turn by ``workers`` threads."""
    n, d = zt.shape
    m = xa.shape[0]
    # with one training block, that block's own maxima are the exact shifts: no pilot
    pilot = xa[::max(1, m // PILOT_POINTS)] if m > cb else None
    starts = iter(range(0, n, rb))
    lock = threading.Lock()

    def work() -> None:
        buffers = thread_buffers(rb * cb, rb * (d + 2), len(scales) > 1)
        while True:
            with lock:
                r0 = next(starts, None)
            if r0 is None:
                return
            out[r0:r0 + rb] = row_block_sums(zt[r0:r0 + rb], xa, pilot, scales, buffers, cb,
                                         n_train)

    # each worker thread runs single-threaded PyTorch on whole row blocks: no barrier per
    # operation, so a thread held back by a busy machine delays only its own blocks
    run_workers(work, workers)


class BlockBuffers:
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


def thread_buffers(block: int, query: int, second: bool) -> BlockBuffers:
    """This thread's buffers, kept from call to call: a fresh multi-MiB buffer per call
    would cost its page faults every time (glibc maps large blocks anew)."""
    bufs: BlockBuffers | None = getattr(_LOCAL, "buffers", None)
    if bufs is None or not bufs.fits(block, query, second):
        _LOCAL.buffers = None  # the old ones go before the new ones come
        bufs = _LOCAL.buffers = BlockBuffers(block, query, second)
    return bufs


def row_block_sums(zb: torch.Tensor, xa: torch.Tensor, pilot: torch.Tensor | None,
               scales: list[float], buffers: BlockBuffers, cb: int, n_train: int) -> np.ndarray:
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
