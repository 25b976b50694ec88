"""Held-out log-likelihood per split, in nats/example, nats/dim and (discrete data) bits/dim."""

from __future__ import annotations

from densbench.data.transforms import LN2
from densbench.metrics.base import CellOutputs, Metric, mean_se
from densbench.metrics.catalogue import bits_per_dim, loglik, loglik_per_dim, metric

__all__ = ["likelihood_metrics"]


def likelihood_metrics(out: CellOutputs) -> list[Metric]:
    """``{split}_loglik`` (nats/example), ``{split}_loglik_per_dim`` (nats/dim) and, for
    discrete data, ``{split}_bits_per_dim`` (negative log-likelihood, bits/dim), each with
    the standard error over examples.

    Example:
        >>> import numpy as np
        >>> out = CellOutputs(dim=2, discrete=True, likelihood_kind="exact",
        ...                   loglik={"test": np.array([-2.0, -4.0]) * LN2})
        >>> for m in likelihood_metrics(out):
        ...     print(m.metric, round(m.value, 6), m.unit)
        test_loglik -2.079442 nats/example
        test_loglik_per_dim -1.039721 nats/dim
        test_bits_per_dim 1.5 bits/dim
    """
    rows: list[Metric] = []
    for split, ll in out.loglik.items():
        m, se = mean_se(ll)
        rows.append(metric(loglik(split), m, se))
        rows.append(metric(loglik_per_dim(split), m / out.dim, se / out.dim))
        if out.discrete:
            k = out.dim * LN2
            rows.append(metric(bits_per_dim(split), -m / k, se / k))
    return rows
