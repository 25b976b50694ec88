"""fit / score_samples / sample timings for EVERY registered estimator at standard sizes.

Fits use each estimator's ``test_params()`` (tiny settings) so that the benchmark measures
the per-call machinery, not a converged model; scoring and sampling use that fitted model.
Run with ``tox -e bench`` (JSON under results/benchmarks/).
"""

from __future__ import annotations

import pytest

import densbench as db

SIZES = ["data_2d", "data_digits", "data_10d"]


def _make(name):
    return db.estimators.make(name, **db.estimators.get(name).test_params())


@pytest.fixture(scope="module")
def fitted(request):
    cache = {}

    def get(name, size):
        if (name, size) not in cache:
            X, V, _ = request.getfixturevalue(size)
            cache[name, size] = _make(name).fit(X, V)
        return cache[name, size]

    return get


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", db.estimators.names())
def test_fit(benchmark, name, size, request):
    X, V, _ = request.getfixturevalue(size)
    benchmark.group = f"fit-{size}"
    benchmark.extra_info["rows"] = len(X)
    benchmark.pedantic(lambda: _make(name).fit(X, V), rounds=1, iterations=1)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", db.estimators.names())
def test_score_samples(benchmark, name, size, fitted, request):
    est = fitted(name, size)
    if est.likelihood is db.estimators.LikelihoodKind.NONE:
        pytest.skip("implicit model")
    _, _, T = request.getfixturevalue(size)
    benchmark.group = f"score-{size}"
    benchmark.extra_info["rows"] = len(T)
    benchmark(est.score_samples, T)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", db.estimators.names())
def test_sample(benchmark, name, size, fitted, request):
    est = fitted(name, size)
    if not est.can_sample:
        pytest.skip("cannot sample")
    _, _, T = request.getfixturevalue(size)
    benchmark.group = f"sample-{size}"
    benchmark.extra_info["rows"] = len(T)
    benchmark(est.sample, len(T), 0)
