"""Held-out log-likelihood per split, in nats/example, nats/dim and (discrete data) bits/dim,
and the caveat on a stochastic figure whose Monte-Carlo error cannot be estimated."""

from __future__ import annotations

import dataclasses

import numpy as np

from densbench.data.transforms import LN2
from densbench.metrics.base import CellOutputs, Metric, mean_se
from densbench.metrics.catalogue import (
    Group,
    bits_per_dim,
    computes,
    loglik,
    loglik_per_dim,
    metric,
)

__all__ = ["MIN_TRUSTED_ESS", "likelihood_metrics", "low_ess_note", "with_note"]

#: Median effective sample size (over examples) below which the Monte-Carlo SE of an
#: importance-weighted figure is not trusted. Below it a handful of draws carries each
#: example's estimate: any SE computed from the draws at hand (the VAE's jackknife over
#: blocks of draws) rests on fewer than five effective values and says nothing of the
#: larger weights that more draws would meet. On the digits VAE the jackknife stays close
#: to the spread over evaluation seeds even below this ESS, but a model with
#: heavier-tailed weights need not.
MIN_TRUSTED_ESS = 5.0


def low_ess_note(ess: np.ndarray | None) -> str | None:
    """The caveat for figures from importance-weighted draws whose median ESS over
    examples is below :data:`MIN_TRUSTED_ESS`, else None.

    Example:
        >>> low_ess_note(np.array([2.0, 3.0, 40.0]))
        'low ESS (median 3.0 < 5): Monte-Carlo SE not trusted'
        >>> low_ess_note(np.array([20.0, 30.0])) is None
        True
    """
    if ess is None or len(ess) == 0:
        return None
    median = float(np.median(ess))
    if median >= MIN_TRUSTED_ESS:
        return None
    return f"low ESS (median {median:.1f} < {MIN_TRUSTED_ESS:g}): Monte-Carlo SE not trusted"


def with_note(row: Metric, note: str | None) -> Metric:
    """``row`` with ``note`` (unchanged when there is none)."""
    return row if note is None else dataclasses.replace(row, note=note)


@computes(Group.LIKELIHOOD)
def likelihood_metrics(out: CellOutputs) -> list[Metric]:
    """``{split}_loglik`` (nats/example), ``{split}_loglik_per_dim`` (nats/dim) and, for
    discrete data, ``{split}_bits_per_dim`` (negative log-likelihood, bits/dim), each with
    the standard error over examples. Test figures from importance-weighted draws with a
    low effective sample size carry :func:`low_ess_note`.

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
        note = low_ess_note(out.test_ess) if split == "test" else None
        m, se = mean_se(ll)
        rows.append(with_note(metric(loglik(split), m, se), note))
        rows.append(with_note(metric(loglik_per_dim(split), m / out.dim, se / out.dim), note))
        if out.discrete:
            k = out.dim * LN2
            rows.append(with_note(metric(bits_per_dim(split), -m / k, se / k), note))
    return rows
