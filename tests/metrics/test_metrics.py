import numpy as np
import pytest
from scipy import stats

from densbench.metrics import CellOutputs, compute_all, mean_se
from densbench.metrics.timing import PeakMemory, Stopwatch
from densbench.metrics.truth import kl_to_truth


def test_mean_se_matches_scipy_sem():
    x = np.random.default_rng(0).standard_normal(500)
    m, se = mean_se(x)
    assert m == pytest.approx(np.mean(x)) and se == pytest.approx(stats.sem(x))


def test_kl_estimate_matches_closed_form_for_gaussians():
    # KL(N(0,1) || N(mu, s^2)) = log s + (1 + mu^2) / (2 s^2) - 1/2
    mu, s = 0.7, 1.8
    x = np.random.default_rng(1).standard_normal(400_000)
    kl, se = kl_to_truth(stats.norm.logpdf(x), stats.norm.logpdf(x, mu, s))
    exact = np.log(s) + (1 + mu**2) / (2 * s**2) - 0.5
    assert abs(kl - exact) < 4 * se
    assert se < 0.005


def test_compute_all_reports_units_and_truth():
    rng = np.random.default_rng(2)
    ll = rng.normal(-3, 1, 100)
    out = CellOutputs(dim=2, discrete=False, likelihood_kind="exact",
                      loglik={"test": ll}, truth_loglik={"test": ll + 0.1})
    rows = {m.metric: m for m in compute_all(out)}
    assert rows["test_loglik"].unit == "nats/example"
    assert rows["test_loglik_per_dim"].value == pytest.approx(np.mean(ll) / 2)
    assert "test_bits_per_dim" not in rows
    assert rows["kl_to_truth"].value == pytest.approx(0.1)
    assert rows["kl_to_truth"].se == pytest.approx(0.0, abs=1e-12)


def test_stopwatch_and_peak_memory_measure_something():
    with Stopwatch() as sw, PeakMemory() as pm:
        a = np.ones(30_000_000)
        a += 1
    assert sw.seconds > 0
    assert pm.delta_bytes > 150e6


def test_limit_threads_reaches_every_blas_pool_in_a_fresh_process():
    # a fresh interpreter, as a worker is: SciPy's own OpenBLAS is loaded later than
    # NumPy's, and must be limited too
    import subprocess
    import sys

    code = ("from densbench.metrics.timing import limit_threads; limit_threads(1)\n"
            "import torch, sklearn.decomposition\n"
            "from threadpoolctl import threadpool_info\n"
            "pools = [(i['internal_api'], i['num_threads']) for i in threadpool_info()]\n"
            "assert any(api == 'openblas' for api, _ in pools), pools\n"
            "print(max(n for _, n in pools), torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["1", "1"]
