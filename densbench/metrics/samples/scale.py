"""The common scale: the power of two by which :func:`~densbench.metrics.samples.sample_metrics`
divides every sample, so that data at any finite scale are compared as at ordinary scale."""

from __future__ import annotations

import numpy as np

__all__ = ["common_scale"]


def common_scale(Y: np.ndarray) -> float:
    """The power of two by which :func:`sample_metrics` divides every sample it compares
    with the reference data ``Y``: 1.0 when ``Y``'s typical spread is of ordinary magnitude
    (see :func:`~densbench.estimators.base.scale_of`), else the power of two just above
    it. The spread is the median absolute deviation from the column medians over all
    entries (one far-off row does not set it), taken on halved values so that no step
    overflows anywhere in the float64 range; where most entries equal their column's
    median, the median of the other deviations.

    Dividing by a power of two changes only exponents, so every metric is computed as at
    ordinary scale, where squares and kernels neither overflow nor underflow.

    Example:
        >>> Y = np.random.default_rng(0).normal(size=(100, 2))
        >>> common_scale(Y), common_scale(Y * 1e155) > 1e154, common_scale(Y * 1e-300) < 1e-299
        (1.0, True, True)
    """
    from densbench.estimators.base import scale_of

    half = 0.5 * Y
    dev = np.abs(half - np.quantile(half, 0.5, axis=0, method="lower"))
    positive = dev[dev > 0.0]
    if positive.size == 0:
        return 1.0
    return scale_of(float(np.quantile(positive, 0.5, method="lower")))


#: Largest binary exponent of the values (rescaled, in :func:`sample_metrics`) that the
#: pairwise metrics take: their squares summed over many dimensions and pairs stay finite.
_SAFE_EXPONENT = 480


def _check_range(x: np.ndarray, y: np.ndarray, scale: float) -> None:
    """A ``ValueError`` saying so when samples ``x`` and data ``y`` (divided by ``scale``)
    are too far apart for their squared distances to be finite in float64."""
    top = max(float(np.max(np.abs(x))), float(np.max(np.abs(y))))
    if top >= 2.0 ** _SAFE_EXPONENT:
        raise ValueError(f"the samples and the data are too far apart to compare in float64 "
                         f"(values up to {top * scale:.3g} beside the data's typical spread; "
                         f"their squared distances overflow)")
