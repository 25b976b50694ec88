"""Gaussian kernel density estimation: the estimator :class:`KDE` (registry name ``kde``)
on top of its engines.

Modules, each importing only those listed before it:

- :mod:`~densbench.estimators.kde.exact`: every kernel term summed in bounded memory;
- :mod:`~densbench.estimators.kde.lattice`: 1-D and 2-D sums interpolated from a lattice,
  with a certified bound per point;
- :mod:`~densbench.estimators.kde.tree`: near terms summed, far ones bounded (k-d tree
  balls and boxes), on the exact engine's blocked sums;
- :mod:`~densbench.estimators.kde.bandwidth`: rules of thumb and the 'cv' scan;
- :mod:`~densbench.estimators.kde.estimator`: :class:`KDE`, which picks a path and a
  bandwidth and delegates the sums.

The exact engine's public names are re-exported here.
"""

from densbench.estimators.kde.estimator import KDE
from densbench.estimators.kde.exact import (
    BLOCK_BYTES,
    BLOCK_TRAIN,
    CHUNK,
    DROP_NATS,
    EXP_FLOOR,
    EXPANSION_ERROR_MAX,
    ONE_THREAD_TERMS,
    PILOT_POINTS,
    augment_train,
    expansion_error_bound,
    locality_order,
    log_kernel_sums,
    magnitude_rounding,
)

__all__ = ["BLOCK_BYTES", "BLOCK_TRAIN", "CHUNK", "DROP_NATS", "EXPANSION_ERROR_MAX",
           "EXP_FLOOR", "KDE", "ONE_THREAD_TERMS", "PILOT_POINTS", "augment_train",
           "expansion_error_bound", "locality_order", "log_kernel_sums", "magnitude_rounding"]
