"""Paired comparisons of two estimators on the same test examples.

Two estimators scored on the same test points give per-example log-likelihoods a_i and b_i;
their difference is judged on the paired differences d_i = a_i - b_i, whose standard error
is far smaller than the two marginal SEs combined when the examples' difficulty is shared.
Across seeds the per-seed mean differences are combined with a t interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["PairedDifference", "across_seeds", "paired_difference"]


@dataclass(frozen=True)
class PairedDifference:
    """Mean difference (a - b) with its SE and a two-sided confidence interval."""

    mean: float
    se: float
    low: float
    high: float
    n: int
    level: float = 0.95

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0."""
        return bool(self.low > 0 or self.high < 0)


def _interval(mean: float, se: float, dof: int, level: float) -> tuple[float, float]:
    if not (math.isfinite(se) and dof >= 1):
        return -math.inf, math.inf
    q = float(stats.t.ppf(0.5 + level / 2, dof))
    return mean - q * se, mean + q * se


def paired_difference(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> PairedDifference:
    """Paired difference of per-example values on the same examples (t interval).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> hard = rng.normal(0, 5, 1000)          # shared difficulty of each example
        >>> a, b = hard + 0.1 + rng.normal(0, 0.1, 1000), hard
        >>> d = paired_difference(a, b)
        >>> round(d.mean, 2), d.significant
        (0.1, True)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_difference: need two vectors of the same length; got "
                         f"{a.shape} and {b.shape}")
    d = a - b
    n = d.size
    mean = float(d.mean()) if n else math.nan
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    low, high = _interval(mean, se, n - 1, level)
    return PairedDifference(mean, se, low, high, n, level)


def across_seeds(per_seed: list[PairedDifference], level: float = 0.95) -> PairedDifference:
    """Combine per-seed paired differences: the mean of the seed means, with the SE across
    seeds (t interval with S - 1 degrees of freedom); one seed returns it unchanged."""
    if not per_seed:
        raise ValueError("across_seeds: no seeds")
    if len(per_seed) == 1:
        return per_seed[0]
    means = np.array([p.mean for p in per_seed])
    mean = float(means.mean())
    se = float(means.std(ddof=1) / math.sqrt(len(means)))
    low, high = _interval(mean, se, len(means) - 1, level)
    return PairedDifference(mean, se, low, high, len(means), level)
