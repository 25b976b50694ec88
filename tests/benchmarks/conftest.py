"""Standard benchmark data: 2-D 20,000 points, digits 64-D, 10-D 50,000 points; the thread
count of the benchmarks.

The test session runs PyTorch on one thread (``tests/conftest.py``); a benchmark runs on
``DENSBENCH_BENCH_THREADS`` threads (default: every core; a module may set its own
``THREADS``), PyTorch's and BLAS's alike, the count it records in ``extra_info['threads']``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import densbench as db
from densbench.data.transforms import prepare
from densbench.metrics.timing import steady_allocator

BENCH_THREADS = int(os.environ.get("DENSBENCH_BENCH_THREADS", os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def steady_memory():
    """Freed blocks kept for reuse, as in the runner's processes: without it a timing
    depended on whether the previous benchmark left the allocator mapping or reusing."""
    steady_allocator()


@pytest.fixture(autouse=True)
def bench_threads(request):
    """Every benchmark on ``BENCH_THREADS`` threads, or on its module's ``THREADS`` where
    the module sets one; the session's count restored after."""
    threads = int(getattr(request.module, "THREADS", BENCH_THREADS))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    if "benchmark" in request.fixturenames:
        request.getfixturevalue("benchmark").extra_info["threads"] = threads
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield threads
    finally:
        torch.set_num_threads(before)


def _synthetic_splits(name: str, n: int):
    """A session fixture: train, validation and test rows of synthetic dataset ``name``
    (n, n / 10 and n rows)."""

    def splits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ds = db.data.load(name, seed=0, n_train=n, n_val=n // 10, n_test=n)
        return ds.train, ds.val, ds.test

    return pytest.fixture(scope="session")(splits)


data_2d = _synthetic_splits("eight_gaussians", 20_000)
data_10d = _synthetic_splits("gmm10", 50_000)


@pytest.fixture(scope="session")
def data_digits():
    p = prepare(db.data.load("digits", seed=0), discrete_native=False, seed=0)
    return p.train, p.val, p.test


@pytest.fixture(scope="session")
def digits_raw():
    """scikit-learn's digits as in the KDE speed claims: 1437 train, 360 test rows."""
    from sklearn.datasets import load_digits

    X = np.asarray(load_digits().data, dtype=np.float64)
    perm = np.random.default_rng(0).permutation(len(X))
    return X[perm[:1437]], X[perm[1437:]]
