"""The metric row type, the inputs every metric function sees, and the standard error."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["CellOutputs", "Metric", "mean_se"]


@dataclass(frozen=True)
class Metric:
    """One figure with its standard error and unit, and a ``note`` where the figure or its
    SE needs a caveat to be read right (kept in the record, marked in the reports)."""

    metric: str
    value: float
    se: float | None
    unit: str
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("value", "se"):
            v = d[key]
            d[key] = None if v is None or not math.isfinite(v) else float(v)
        if d["note"] is None:  # no key without a caveat: ``note`` is optional in a record
            del d["note"]
        return d


@dataclass
class CellOutputs:
    """What a fitted cell produced, in the units of the original data."""

    dim: int
    discrete: bool
    likelihood_kind: str
    loglik: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-example log-likelihood (or bound) per split, nats, original units."""
    truth_loglik: dict[str, np.ndarray] | None = None
    """Per-example exact true log-density per split (synthetic data only)."""
    samples: np.ndarray | None = None
    truth_of_samples: np.ndarray | None = None
    """Exact true log-density of the model's samples (synthetic data only)."""
    test_ess: np.ndarray | None = None
    """Per-example effective sample size of the draws behind a stochastic test figure
    (an importance-weighted bound), where the estimator reports one."""


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error ``std(ddof=1) / sqrt(n)`` (NaN SE for one value).

    Example:
        >>> mean_se(np.array([1.0, 2.0, 3.0]))
        (2.0, 0.5773502691896258)
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    m = float(np.mean(x))
    se = float(np.std(x, ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan
    return m, se
