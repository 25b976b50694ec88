"""Metrics: plain functions of a cell's outputs, registered by name.

Each registered metric function takes a :class:`CellOutputs` and returns a list of
:class:`Metric` rows (empty when it does not apply, e.g. truth metrics on real data).
Every row's name, unit and direction are those of :mod:`densbench.metrics.catalogue`.
"""

from __future__ import annotations

from collections.abc import Callable

from densbench.metrics.base import CellOutputs, Metric, mean_se
from densbench.registry import Registry

__all__ = ["REGISTRY", "CellOutputs", "Metric", "compute_all", "mean_se", "names"]

REGISTRY: Registry[Callable[[CellOutputs], list[Metric]]] = Registry("metric")


def names() -> list[str]:
    return REGISTRY.names()


def compute_all(outputs: CellOutputs) -> list[Metric]:
    """Every registered metric that applies to ``outputs``."""
    rows: list[Metric] = []
    for name in REGISTRY.names():
        rows.extend(REGISTRY.get(name)(outputs))
    return rows


from densbench.metrics import likelihood, truth  # noqa: E402

REGISTRY.register("likelihood")(likelihood.likelihood_metrics)
REGISTRY.register("truth")(truth.truth_metrics)
