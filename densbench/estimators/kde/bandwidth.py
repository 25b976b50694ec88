"""Bandwidth selection of the Gaussian KDE: the rules of thumb and the 'cv' scan.

The scan scores candidate bandwidths through a callable given by the estimator (the
log-likelihood of each validation row at each bandwidth), so it knows nothing of the
engine that sums the kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["CV_ROWS_COARSE", "CV_ROWS_TREE", "CV_STOP_AFTER", "CV_STOP_Z", "RULES",
           "RowLogliks", "Selection", "rules_of_thumb", "select_cv"]

#: The bandwidth rules a user may name.
RULES = ("scott", "silverman", "cv")
#: 'cv' on the tree and lattice paths scores at most this many validation rows (evenly
#: strided) per bandwidth of the fine grid: the standard error of their mean is already far
#: below the differences between the grid's bandwidths, and every bandwidth is a full pass
#: over them ...
CV_ROWS_TREE = 20_000
#: ... and at most this many (strided from those) per bandwidth of the coarse grid, which
#: only locates the fine grid (its widest bandwidths make every tree ball dense, so scoring
#: them on all the fine grid's rows would dominate the whole fit on large training sets).
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

#: The log-likelihood of each row of ``X`` at each bandwidth of ``hs``: (len(X), len(hs)).
RowLogliks = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Selection(NamedTuple):
    """The outcome of :func:`select_cv`: the bandwidth chosen, the (h, mean validation
    log-likelihood) pairs it was chosen among, and the coarse stage's pairs (empty when
    the coarse grid was scored on the same rows)."""

    bandwidth: float
    scores: list[tuple[float, float]]
    coarse: list[tuple[float, float]]


def rules_of_thumb(sigma: float, n: int, d: int) -> tuple[float, float]:
    """Scott's and Silverman's bandwidths for ``n`` rows in ``d`` dimensions whose root
    mean per-dimension variance is ``sigma``.

    Example:
        >>> tuple(round(h, 6) for h in rules_of_thumb(1.0, 1, 1))
        (1.0, 1.059224)
    """
    scott = sigma * n ** (-1.0 / (d + 4))
    silverman = sigma * (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    return scott, silverman


def select_cv(row_logliks: RowLogliks, X_val: np.ndarray, scott: float, silverman: float,
              subsample: bool) -> Selection:
    """'cv': coarse grid (with Scott and Silverman), then a finer grid around the best.
    With ``subsample`` (the tree and lattice paths) the coarse grid is scored on at most
    :data:`CV_ROWS_COARSE` validation rows and the best point, its neighbours and the
    fine grid on at most :data:`CV_ROWS_TREE`; the choice is made among the latter."""
    rows = X_val
    coarse_rows = X_val
    if subsample:
        rows = X_val[::max(1, -(-len(X_val) // CV_ROWS_TREE))]
        coarse_rows = rows[::max(1, -(-len(rows) // CV_ROWS_COARSE))]
    two_stage = len(coarse_rows) < len(rows)
    coarse: dict[float, float] = {}
    grid = np.concatenate([scott * _CV_GRID, [scott, silverman]])
    if two_stage:
        _scan(row_logliks, coarse, coarse_rows, sorted(set(map(float, grid))))
    else:
        _evaluate(row_logliks, coarse, coarse_rows, grid)
    hs = sorted(coarse)
    i = max(range(len(hs)), key=lambda j: (coarse[hs[j]], -j))
    lo, hi = hs[max(i - 1, 0)], hs[min(i + 1, len(hs) - 1)]
    final = {} if two_stage else coarse
    if two_stage:
        _evaluate(row_logliks, final, rows, [lo, hs[i], hi])
    if hi > lo:
        _evaluate(row_logliks, final, rows, np.geomspace(lo, hi, _CV_FINE))
    scores = sorted(final.items())
    # the best score; the smallest such h on ties
    best = max(scores, key=lambda hs_: (hs_[1], -hs_[0]))[0]
    return Selection(best, scores, sorted(coarse.items()) if two_stage else [])


def _evaluate(row_logliks: RowLogliks, tried: dict[float, float], X: np.ndarray,
              hs: Sequence[float]) -> None:
    """Score the bandwidths of ``hs`` not yet in ``tried`` on ``X``, all in one call."""
    hs = np.array([h for h in hs if float(h) not in tried])
    if hs.size:
        for h, s in zip(hs, np.mean(row_logliks(X, hs), axis=0), strict=True):
            tried[float(h)] = float(s)


def _scan(row_logliks: RowLogliks, tried: dict[float, float], X: np.ndarray,
          hs: list[float]) -> None:
    """Score ``hs`` (ascending) on ``X`` one by one into ``tried``, stopping after
    :data:`CV_STOP_AFTER` in a row that are each below the best so far by more than
    :data:`CV_STOP_Z` paired standard errors."""
    from densbench.metrics.base import mean_se

    best: np.ndarray | None = None
    below = 0
    for h in hs:
        ll = row_logliks(X, np.array([h]))[:, 0]
        tried[h] = float(np.mean(ll))
        if best is None or tried[h] > float(np.mean(best)):
            best, below = ll, 0
            continue
        gap, se = mean_se(best - ll)  # paired over the rows
        below = below + 1 if gap > CV_STOP_Z * se else 0
        if below >= CV_STOP_AFTER:
            return
