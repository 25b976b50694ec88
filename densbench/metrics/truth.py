"""Gap to a known truth (synthetic data): the KL divergence estimate and its SE."""

from __future__ import annotations

import numpy as np

from densbench.metrics.base import CellOutputs, Metric, mean_se
from densbench.metrics.catalogue import (
    KL_TO_TRUTH,
    SAMPLES_OUTSIDE_TRUTH_SUPPORT,
    SAMPLES_TRUTH_LOGLIK,
    TEST_LOGLIK_TRUTH,
    Group,
    computes,
    metric,
)

__all__ = ["kl_to_truth", "truth_metrics"]


def kl_to_truth(log_p_true: np.ndarray, log_q: np.ndarray) -> tuple[float, float]:
    """Monte-Carlo estimate of KL(p || q) = E_p[log p(x) - log q(x)] over draws ``x ~ p``,
    with the standard error of the paired differences.

    Example:
        >>> from scipy.stats import norm
        >>> x = np.random.default_rng(0).standard_normal(200_000)
        >>> kl, se = kl_to_truth(norm.logpdf(x), norm.logpdf(x, loc=1.0))
        >>> abs(kl - 0.5) < 4 * se   # closed form: (mu_p - mu_q)^2 / 2 = 0.5
        True
    """
    return mean_se(np.asarray(log_p_true) - np.asarray(log_q))


@computes(Group.TRUTH)
def truth_metrics(out: CellOutputs) -> list[Metric]:
    """``test_loglik_truth`` (the true density's own test figure) and ``kl_to_truth``."""
    if out.truth_loglik is None or "test" not in out.truth_loglik:
        return []
    rows: list[Metric] = []
    truth_test = out.truth_loglik["test"]
    m, se = mean_se(truth_test)
    rows.append(metric(TEST_LOGLIK_TRUTH, m, se))
    if "test" in out.loglik:
        kl, kl_se = kl_to_truth(truth_test, out.loglik["test"])
        rows.append(metric(KL_TO_TRUTH, kl, kl_se))
    if out.truth_of_samples is not None:
        lp = np.asarray(out.truth_of_samples)
        outside = ~np.isfinite(lp)
        # E_{x~model}[log p_true(x)] is -inf when any sample falls outside the true support
        # (checkerboard): report that fraction rather than a meaningless mean.
        m, se = mean_se(lp) if not outside.any() else (-np.inf, np.nan)
        rows.append(metric(SAMPLES_TRUTH_LOGLIK, m, se))
        frac, frac_se = mean_se(outside.astype(np.float64))
        rows.append(metric(SAMPLES_OUTSIDE_TRUTH_SUPPORT, frac, frac_se))
    return rows
