"""fit / score_samples / sample timings for EVERY registered estimator at standard sizes.

Fits use each estimator's ``test_params()`` (tiny settings) so that the benchmark measures
the per-call machinery, not a converged model; scoring and sampling use that fitted model.
An image model whose test settings fix an image shape is timed once, on the tiny images
of the conformance checks (:func:`densbench.testing.check_data`), not on the flat sizes.
Run with ``tox -e bench`` (JSON under results/benchmarks/).
"""

from __future__ import annotations

import pytest

import densbench as db
from densbench.testing import check_data

SIZES = ["data_2d", "data_digits", "data_10d"]


def _make(name):
    return db.estimators.make(name, **db.estimators.get(name).test_params())


def _data(name, size, request):
    """(train, val, test) of ``size``; an image model's own tiny images instead (timed at
    the first size only)."""
    cls = db.estimators.get(name)
    if "image_shape" not in cls.test_params():
        return request.getfixturevalue(size)
    if size != SIZES[0]:
        pytest.skip("an image model: timed once, on its tiny images")
    return check_data(cls)


@pytest.fixture(scope="module")
def fitted(request):
    cache = {}

    def get(name, size):
        if (name, size) not in cache:
            X, V, _ = _data(name, size, request)
            cache[name, size] = _make(name).fit(X, V)
        return cache[name, size]

    return get


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", db.estimators.names())
def test_fit(benchmark, name, size, request):
    X, V, _ = _data(name, size, request)
    benchmark.group = f"fit-{size}"
    benchmark.extra_info["rows"] = len(X)
    benchmark.pedantic(lambda: _make(name).fit(X, V), rounds=1, iterations=1)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", db.estimators.names())
def test_score_samples(benchmark, name, size, fitted, request):
    est = fitted(name, size)
    if est.likelihood is db.estimators.LikelihoodKind.NONE:
        pytest.skip("implicit model")
    _, _, T = _data(name, size, request)
    benchmark.group = f"score-{size}"
    benchmark.extra_info["rows"] = len(T)
    benchmark(est.score_samples, T)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", db.estimators.names())
def test_sample(benchmark, name, size, fitted, request):
    est = fitted(name, size)
    if not est.can_sample:
        pytest.skip("cannot sample")
    _, _, T = _data(name, size, request)
    benchmark.group = f"sample-{size}"
    benchmark.extra_info["rows"] = len(T)
    benchmark(est.sample, len(T), 0)
