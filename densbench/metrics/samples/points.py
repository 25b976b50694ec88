"""The sample metrics' result type and the checks every metric applies to its inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SampleScore"]


@dataclass(frozen=True)
class SampleScore:
    """One sample-quality figure: ``value``, its standard error (``None`` when the metric has
    none) and metric-specific ``extra`` details (bandwidths, per-fold accuracies, ...)."""

    value: float
    se: float | None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _as_points(A: Any, label: str, dim: int | None = None) -> np.ndarray:
    """``A`` as a C-contiguous float64 (n, d) array; a 1-D array is n points in one dimension."""
    a = np.asarray(A, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{label} must be a 2-D array (n, d); got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{label} is empty")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{label} has {a.shape[1]} columns; expected {dim}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{label} contains NaN or infinite values")
    return np.ascontiguousarray(a)


def _pair(X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = _as_points(X, "X")
    return x, _as_points(Y, "Y", x.shape[1])


def _need_rows(a: np.ndarray, label: str, at_least: int, owner: str) -> None:
    if a.shape[0] < at_least:
        raise ValueError(f"{owner}: {label} needs at least {at_least} rows; got {a.shape[0]}")
