"""Choosing a model size (mixture components, HMM states) from a list of candidates.

Shared by :mod:`densbench.estimators.gmm` and :mod:`densbench.estimators.hmm`: the size
parameter is an int or a list of ints; a list is searched in increasing order, scored by
the mean validation log-likelihood when validation data are given, else by BIC on the
training data, and the search stops after ``patience`` candidates without improvement.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from densbench.estimators.base import DensityEstimator
from densbench.estimators.params import Constraint, Interval, ListOf

__all__ = ["SIZES", "Selection", "select_size"]

#: The constraints of a size hyperparameter: one size, or candidates to select from.
SIZES: list[Constraint | None] = [Interval(int, 1, None), ListOf(Interval(int, 1, None))]


class Selection:
    """The outcome of :func:`select_size`: ``size``, the kept ``state``, ``tried`` (list of
    (size, score) in the order tried) and ``criterion`` (``'val_loglik'``, ``'bic'``)."""

    def __init__(self, size: int, state: Any, tried: list[tuple[int, float]],
                 criterion: str) -> None:
        self.size, self.state, self.tried, self.criterion = size, state, tried, criterion


def select_size(est: DensityEstimator, candidates: list[int], fit: Callable[[int], Any],
                X: np.ndarray, X_val: np.ndarray | None, patience: int) -> Selection:
    """Fit ``candidates`` in increasing order and keep the best.

    ``fit(k)`` fits size ``k``, leaves ``est`` in that fitted state (so that its
    ``_score_samples`` and ``_n_parameters`` describe it) and returns what restores it.
    Score: mean validation log-likelihood (higher is better) with ``X_val``, else BIC on
    ``X``, ``-2 log L + p log n`` (lower is better). The caller restores the kept state.
    """
    criterion = "val_loglik" if X_val is not None else "bic"
    tried: list[tuple[int, float]] = []
    best: tuple[float, int, Any] | None = None
    since_best = 0
    for k in sorted(set(candidates)):
        state = fit(k)
        if X_val is not None:
            value = float(np.mean(est._score_samples(X_val)))
            gain = value
        else:
            value = (-2.0 * float(np.sum(est._score_samples(X)))
                     + est._n_parameters() * math.log(X.shape[0]))
            gain = -value
        tried.append((k, value))
        if best is None or gain > best[0]:
            best, since_best = (gain, k, state), 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    if best is None:
        raise ValueError(f"{est.name}: no size candidate to fit")
    return Selection(best[1], best[2], tried, criterion)
