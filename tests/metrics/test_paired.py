import numpy as np
import pytest
from scipy import stats

from densbench.metrics.paired import across_seeds, paired_difference


def test_matches_scipy_paired_t_test():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 300)
    b = a - 0.05 + rng.normal(0, 0.3, 300)
    d = paired_difference(a, b)
    res = stats.ttest_rel(a, b)
    ci = res.confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert d.significant == (res.pvalue < 0.05)


def test_pairing_detects_what_marginal_errors_hide():
    rng = np.random.default_rng(2)
    hard = rng.normal(0, 10, 2000)
    a, b = hard + 0.05 + rng.normal(0, 0.2, 2000), hard
    d = paired_difference(a, b)
    marginal = np.hypot(a.std(ddof=1), b.std(ddof=1)) / np.sqrt(2000)
    assert d.significant and abs(d.mean) < 2 * marginal


def test_no_difference_is_not_significant_at_the_nominal_rate():
    rng = np.random.default_rng(3)
    hits = sum(paired_difference(rng.normal(size=200), rng.normal(size=200)).significant
               for _ in range(400))
    assert 8 <= hits <= 36  # 5% of 400 = 20, binomial 99.9% range


def test_across_seeds_uses_seed_means():
    per = [paired_difference(np.full(5, m) + np.arange(5), np.arange(5.0))
           for m in (0.1, 0.2, 0.3)]
    c = across_seeds(per)
    assert c.mean == pytest.approx(0.2) and c.se == pytest.approx(0.1 / np.sqrt(3))
    assert c.n == 3
    with pytest.raises(ValueError):
        paired_difference(np.ones(3), np.ones(4))
