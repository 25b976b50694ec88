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
    import mmap

    with Stopwatch() as sw, PeakMemory() as pm:  # fresh pages, whatever malloc keeps
        pages = np.frombuffer(mmap.mmap(-1, 240_000_000), dtype=np.uint8)
        pages[:] = 1
    assert sw.seconds > 0
    assert pm.delta_bytes > 150e6


def test_steady_allocator_keeps_freed_blocks_for_reuse():
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    # resident memory given back when a 64 MB array is freed: by default glibc unmaps it
    # (and maps and faults in a new one for the next array); kept, the next one reuses it
    code = ("import sys, numpy as np\n"
            "from densbench.metrics.timing import (current_rss_bytes, release_free_memory,\n"
            "                                      steady_allocator)\n"
            "if sys.argv[1].startswith('steady'): assert steady_allocator()\n"
            "a = np.ones(8_000_000)\n"
            "before = current_rss_bytes(); del a\n"
            "if sys.argv[1] == 'steady-trim': assert release_free_memory()\n"
            "print(before - current_rss_bytes())\n")

    def given_back(mode):
        return int(subprocess.run([sys.executable, "-c", code, mode], capture_output=True,
                                  text=True, check=True).stdout)

    assert given_back("default") > 60e6
    assert given_back("steady") < 1e6
    assert given_back("steady-trim") > 60e6  # release_free_memory hands it back


def test_mallopt_settings_are_applied_in_order(monkeypatch):
    import ctypes
    import sys

    from densbench.metrics import timing

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    calls = []

    class Libc:
        def __init__(self, cap):
            self.cap = cap

        def mallopt(self, param, value):
            calls.append((param, value.value))
            return int(value.value <= self.cap)

    # the mmap threshold first, the trim threshold only where it was accepted; older
    # glibc caps the mmap threshold at 32 MiB, where that is tried next
    for cap, expected in [(2**31, [(-3, 2**30), (-1, 2**30)]),
                          (32 << 20, [(-3, 2**30), (-3, 32 << 20), (-1, 32 << 20)]),
                          (0, [(-3, 2**30), (-3, 32 << 20)])]:
        calls.clear()
        monkeypatch.setattr(ctypes, "CDLL", lambda name, cap=cap: Libc(cap))
        assert timing.steady_allocator() is bool(cap)
        assert calls == expected


def fake_cuda(monkeypatch, peaks, reserved=None, allocated=None):
    """PyTorch's CUDA calls replaced by recorders: CUDA started, len(peaks) devices, device
    0 current; device i holds ``reserved[i]`` bytes (default: some) of which
    ``allocated[i]`` are allocated (default: its peak); a reset sets the peak to what is
    allocated, as PyTorch's does. The lists may be changed while the fake is in use."""
    import torch

    calls = []
    reserved = [1] * len(peaks) if reserved is None else reserved
    allocated = list(peaks) if allocated is None else allocated
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(peaks))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: reserved[i])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda i: calls.append(("sync", i)))

    def reset(i):
        calls.append(("reset", i))
        peaks[i] = allocated[i]

    def peak(i):
        calls.append(("peak", i))
        return peaks[i]

    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", peak)
    return calls


def test_device_peak_and_clock_are_read_after_synchronizing(monkeypatch):
    calls = fake_cuda(monkeypatch, [100, 300])
    with PeakMemory() as pm:
        assert calls == [("sync", 0), ("sync", 1), ("reset", 0), ("reset", 1)]
        calls.clear()
    # every device synchronized before any peak is read; the largest peak is reported
    assert calls == [("sync", 0), ("sync", 1), ("peak", 0), ("peak", 1)]
    assert pm.device_peak_bytes == 300
    calls.clear()
    with Stopwatch():
        assert calls == [("sync", 0), ("sync", 1)]
    assert calls == [("sync", 0), ("sync", 1)] * 2


def test_devices_never_used_are_left_alone(monkeypatch):
    # device 1 holds no memory, has no peak and is not current: synchronizing it would
    # create a CUDA context there; device 2 holds memory, device 0 is current
    peaks = [0, 0, 200]
    calls = fake_cuda(monkeypatch, peaks, reserved=[0, 0, 4096])
    with PeakMemory() as pm:
        assert calls == [("sync", 0), ("sync", 2), ("reset", 0), ("peak", 1), ("reset", 2)]
        calls.clear()
    assert calls == [("sync", 0), ("sync", 2), ("peak", 0), ("peak", 2)]
    assert pm.device_peak_bytes == 200
    # CUDA started earlier in the process, but nothing allocated in this block: no peak
    fake_cuda(monkeypatch, [0, 0])
    with PeakMemory() as pm:
        pass
    assert pm.device_peak_bytes is None


def test_an_old_peak_of_a_device_used_again_is_not_reported(monkeypatch):
    # device 1 peaked at 700 in an earlier block and released its memory since; used
    # again inside this block, up to 250: its old peak must not come back
    peaks, reserved, allocated = [0, 700, 0], [1, 0, 0], [0, 0, 0]
    calls = fake_cuda(monkeypatch, peaks, reserved=reserved, allocated=allocated)
    with PeakMemory() as pm:
        assert ("reset", 1) in calls and ("sync", 1) not in calls
        reserved[1], peaks[1] = 4096, max(peaks[1], 250)  # a peak only grows
    assert pm.device_peak_bytes == 250


def test_records_carry_the_device_peak_only_where_cuda_was_used(monkeypatch):
    from densbench.runner.execute import run_cell
    from densbench.runner.plan import Cell, Spec

    cell = Cell(Spec("gaussian"), Spec("banana", {"n_train": 200, "n_val": 100,
                                                  "n_test": 100}), 0)

    def cost(rec):
        assert rec["status"] == "ok", rec.get("traceback")
        return {m["metric"]: m for m in rec["metrics"]}

    assert "peak_device_mb" not in cost(run_cell(cell))
    fake_cuda(monkeypatch, [3 * 2**20])
    got = cost(run_cell(cell))["peak_device_mb"]
    assert (got["value"], got["unit"]) == (3.0, "MB")


def test_without_cuda_there_is_no_device_peak():
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        pytest.skip("CUDA is in use in this process")
    with PeakMemory() as pm:
        torch.ones(1000).sum()
    assert pm.device_peak_bytes is None


def test_device_peak_on_a_real_gpu():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    with PeakMemory() as pm:
        x = torch.ones(16 * 2**20, device="cuda")  # 64 MiB of float32
        (x * 2).sum().item()
    assert pm.device_peak_bytes is not None and pm.device_peak_bytes >= 2 * 64 * 2**20


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


@pytest.mark.parametrize("ess, noted", [([1.5, 3.0, 80.0], True), ([4.0, 6.0, 9.0], False)])
def test_a_low_ess_notes_the_test_figures_only(ess, noted):
    out = CellOutputs(dim=2, discrete=True, likelihood_kind="stochastic_bound",
                      loglik={"test": np.array([-3.0, -2.0, -4.0]), "val": np.array([-3.0])},
                      test_ess=np.array(ess))
    rows = {m.metric: m.to_dict() for m in compute_all(out)}
    for name in ("test_loglik", "test_loglik_per_dim", "test_bits_per_dim"):
        assert ("note" in rows[name]) is noted
    assert "note" not in rows["val_loglik"]
    if noted:
        assert rows["test_loglik"]["note"] == ("low ESS (median 3.0 < 5): Monte-Carlo SE "
                                               "not trusted")


def _svd_on(threads):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        return np.linalg.svd(np.eye(4))


def test_thread_audit_sees_a_pool_raised_and_restored_inside_a_call():
    # the session runs on one thread (tests/conftest.py): before and after, every pool
    # reads 1; only a look from inside sees the SVD's 2 BLAS threads
    import threading

    import torch

    from densbench.metrics.timing import ThreadAudit, blas_thread_count

    def torch_on_three():
        before = torch.get_num_threads()
        torch.set_num_threads(3)
        torch.ones(2).sum()
        torch.set_num_threads(before)

    with ThreadAudit() as quiet:
        np.linalg.svd(np.eye(4))
    assert quiet.over(1) == {}
    with ThreadAudit() as audit:
        _svd_on(2)
        thread = threading.Thread(target=torch_on_three)  # and in another thread
        thread.start()
        thread.join()
    assert blas_thread_count() == 1 and torch.get_num_threads() == 1
    over = audit.over(1)
    blas = [k for k in over if k.startswith("openblas")]
    assert blas and all(over[k][0] == 2 for k in blas)
    assert any("_svd_on" in call for call in over[blas[0]][1])
    assert over["torch"][0] == 3 and any("torch_on_three" in c for c in over["torch"][1])


# -- a cell's figures on user data at extreme scales --------------------------------------

def _splits(rng, big_row=None):
    """Train, val and test rows (2-D); ``big_row``: one more training row."""
    train, val, test = (rng.normal(size=(n, 2)) * [1.0, 0.5] for n in (300, 100, 100))
    if big_row is not None:
        train = np.vstack([train, big_row])
    return {"train": train, "val": val, "test": test}


def _run(tmp_path, name, splits):
    from densbench.runner.cell import run_cell
    from densbench.runner.plan import Cell, Spec

    np.savez(tmp_path / f"{name}.npz", **splits)
    rec = run_cell(Cell(Spec("gaussian"), Spec(str(tmp_path / f"{name}.npz")), 0,
                        n_samples=100))
    assert rec["status"] == "ok", rec.get("traceback")
    return rec, {m["metric"]: m for m in rec["metrics"]}


def _scipy_test_loglik(splits, scale):
    """The Gaussian's mean test log-likelihood by SciPy on the data divided by ``scale``
    (maximum likelihood plus the relative ridge 1e-6), back in the data's units."""
    train, test = splits["train"] / scale, splits["test"] / scale
    cov = np.cov(train, rowvar=False, bias=True)
    cov += 1e-6 * np.trace(cov) / 2 * np.eye(2)
    ll = stats.multivariate_normal(train.mean(0), cov).logpdf(test) - 2 * np.log(scale)
    return float(np.mean(ll))


@pytest.mark.parametrize("factor", [1e155, 1e-300])
def test_a_cell_on_data_at_an_extreme_scale_keeps_every_figure(tmp_path, factor):
    """A user's .npz at 1e155 or 1e-300: the test log-likelihood is SciPy's on the
    rescaled data, and every sample metric is computed and equals its value at scale 1
    (times the factor where its unit is the data's)."""
    from densbench.metrics.catalogue import SAMPLE_METRICS

    plain = _splits(np.random.default_rng(20))
    _, want = _run(tmp_path, "plain", plain)
    rec, got = _run(tmp_path, "scaled", {k: v * factor for k, v in plain.items()})
    assert got["test_loglik"]["value"] == pytest.approx(
        _scipy_test_loglik({k: v * factor for k, v in plain.items()}, factor), rel=1e-12)
    assert got["test_loglik"]["value"] == pytest.approx(
        want["test_loglik"]["value"] - 2 * np.log(factor), rel=1e-12)
    assert "sample_metric_errors" not in rec
    for name, info in SAMPLE_METRICS.items():
        times = factor if info.unit == "data units" else 1.0
        assert got["samples_" + name]["value"] == pytest.approx(
            want["samples_" + name]["value"] * times, rel=1e-6, abs=1e-9 * times), name


def test_a_row_near_the_largest_float64_is_fitted_and_its_samples_fail_apart(tmp_path):
    """One training row of 1.7e308 beside ordinary ones: no false 'zero variance'; the
    likelihoods are SciPy's on the data rescaled by 2^1023; the samples, spread to 1e307,
    cannot be compared with the ordinary test rows in float64, which every sample metric
    records as its failure (value missing, a note, the traceback) while the cell is ok."""
    splits = _splits(np.random.default_rng(21), big_row=[1.7e308, 1.7e308])
    rec, got = _run(tmp_path, "row", splits)
    assert got["test_loglik"]["value"] == pytest.approx(
        _scipy_test_loglik(splits, 2.0 ** 1023), rel=1e-12)
    assert np.isfinite(got["val_loglik"]["value"])
    rows = [m for name, m in got.items() if name.startswith("samples_")
            and name != "samples_truth_loglik"]
    assert rows and all(m["value"] is None and "too far apart to compare in float64"
                        in m["note"] for m in rows)
    (error,) = rec["sample_metric_errors"]
    assert len(error["metrics"]) == len(rows) and "Traceback" in error["traceback"]
