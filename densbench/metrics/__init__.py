"""Metrics: plain functions of a cell's outputs, dispatched by the catalogue.

Each group's function takes a :class:`CellOutputs` and returns a list of :class:`Metric`
rows (empty when it does not apply, e.g. truth metrics on real data); every row's name,
unit and direction are those of :mod:`densbench.metrics.catalogue`, which also says which
function computes each group (:func:`~densbench.metrics.catalogue.computes`).
"""

from __future__ import annotations

# imported for the group functions they declare to the catalogue
from densbench.metrics import likelihood as likelihood
from densbench.metrics import truth as truth
from densbench.metrics.base import CellOutputs, Metric, mean_se
from densbench.metrics.catalogue import compute_all

__all__ = ["CellOutputs", "Metric", "compute_all", "mean_se"]
