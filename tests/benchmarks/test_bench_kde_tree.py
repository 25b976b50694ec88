"""The KDE lattice and tree paths beside KDEpy's FFT estimate and densbench's exact path
(group ``kde-tree-2d``), and the tree path at the size of the POWER data set
(``kde-tree-power``).

- kde-tree-2d: ``eight_gaussians``, bandwidth 0.1, N training x N query rows with
  N = 100,000 under ``DENSBENCH_BENCH_FULL=1`` (set by ``tox -e bench``) and 5,000 in the
  CI's one-round pass. Each entry records its rate and its error against the exact sum on
  500 evenly spaced query rows (``max_abs_diff_direct``, nats); the lattice and tree
  entries also their largest certified bound and the fraction of kernel terms summed one
  by one. The lattice entry (``grid``) times fit and scoring together, as KDEpy's entries
  time binning, transform and interpolation (``score_s``: scoring alone, the lattice
  built); the others time scoring (their fit stores or orders the data). KDEpy's
  ``FFTKDE`` bins the data on a 1024 x 1024 grid (``kdepy_fft``; 4096 x 4096:
  ``kdepy_fft_4096``, for its error at 16 times the cells) and its values are
  interpolated (linearly) at the queries: an estimate without a bound, whose error the
  entry records.
- kde-tree-power: full size only, 1,600,000 training x 200,000 query rows in 6-D, shaped
  like POWER after the usual preprocessing (Papamakarios et al., 2017): standardized
  columns, three of them a few discrete levels dequantized with uniform noise, the others
  continuous and skewed; bandwidth 0.05 (of the standardized scale: narrow, the tree's
  regime) and 0.19 (what ``kde-cv-power`` chooses on these rows, 0.79x Scott's 0.24:
  nearly every ball is dense, so nearly every term is summed). One round of scoring (the
  fit is recorded as ``fit_s``); the entry records the bound, the fraction summed and the
  error on 50 rows against the exact sum.
- kde-cv-power: full size only, ``bandwidth='cv'`` on the same 1,600,000 training rows with
  20,000 validation rows (POWER's validation split is 180,000: 'cv' scores at most
  ``CV_ROWS_TREE`` of them). One round; records the chosen bandwidth, Scott's, and how
  many bandwidths each stage scored.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

import densbench as db

from .test_bench_references import direct_kde, record_speed

FULL = os.environ.get("DENSBENCH_BENCH_FULL") == "1"
N_2D = 100_000 if FULL else 5_000
H_2D = 0.1
TOLERANCE = 1e-6
#: Query rows scored at POWER size (its test split).
N_POWER_QUERY = 200_000


@pytest.fixture(scope="module")
def data_2d_large():
    ds = db.data.load("eight_gaussians", seed=0, n_train=N_2D, n_val=10, n_test=N_2D)
    return ds.train, ds.test


def kdepy_fft(train: np.ndarray, h: float, grid: int):
    """KDEpy's FFT estimate on a ``grid x grid`` lattice, interpolated at the queries."""
    from KDEpy import FFTKDE
    from scipy.interpolate import RegularGridInterpolator

    def score(Z: np.ndarray) -> np.ndarray:
        points, y = FFTKDE(kernel="gaussian", bw=h).fit(train).evaluate((grid, grid))
        axes = [np.unique(points[:, j]) for j in range(2)]
        dens = RegularGridInterpolator(axes, y.reshape(grid, grid), bounds_error=False,
                                       fill_value=0.0)(Z)
        with np.errstate(divide="ignore"):
            return np.log(np.maximum(dens, 0.0))
    return score


@pytest.mark.parametrize("impl", ["grid", "tree", "kdepy_fft", "kdepy_fft_4096", "exact"])
def test_kde_tree_2d(benchmark, impl, data_2d_large):
    if impl == "kdepy_fft_4096" and not FULL:
        pytest.skip("a 4096 x 4096 grid takes seconds whatever N: DENSBENCH_BENCH_FULL=1 only")
    train, test = data_2d_large
    benchmark.group = "kde-tree-2d"
    if impl.startswith("kdepy_fft"):
        fn = kdepy_fft(train, H_2D, 4096 if impl.endswith("4096") else 1024)
    elif impl == "grid":
        def fn(Z: np.ndarray) -> np.ndarray:  # the lattice is built by fit: timed with it
            return make_grid().score_samples(Z)

        def make_grid():  # type: ignore[no-untyped-def]
            return db.estimators.make("kde", bandwidth=H_2D, algorithm="grid",
                                      tolerance=TOLERANCE).fit(train)
    else:
        est = db.estimators.make("kde", bandwidth=H_2D, algorithm=impl,
                                 tolerance=TOLERANCE).fit(train)
        fn = est.score_samples
    # CI's pass: one round each; at full size 10 rounds (after one unmeasured) for the
    # entries that take a fraction of a second
    fast = FULL and impl in ("grid", "kdepy_fft")
    rounds = 10 if fast else 3 if FULL and impl != "exact" else 1
    got = benchmark.pedantic(fn, args=(test,), rounds=rounds, iterations=1,
                             warmup_rounds=1 if fast else 0)
    record_speed(benchmark, len(test))
    rows = np.linspace(0, len(test) - 1, 500).astype(int)
    diff = np.abs(got[rows] - direct_kde(test[rows], train, H_2D))
    benchmark.extra_info.update({"n_train": len(train), "n_query": len(test),
                                 "max_abs_diff_direct": float(np.max(diff)),
                                 "median_abs_diff_direct": float(np.median(diff))})
    if impl == "grid":
        est = make_grid()
        assert est.algorithm_ == "grid"
        t0 = time.perf_counter()
        est.score_samples(test)
        benchmark.extra_info["score_s"] = time.perf_counter() - t0
    if impl in ("grid", "tree"):
        diag = est.diagnostics(test)
        bound = diag["kde_error_bound"][0]
        benchmark.extra_info.update({
            "max_bound": float(np.max(bound)),
            "mean_terms_summed": float(np.mean(diag["kde_terms_summed"][0]))})
        assert np.all(diff <= bound[rows]) and np.max(bound) <= TOLERANCE
    elif impl == "exact":
        assert np.max(diff) <= 1e-8


def power_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """6-D rows shaped like preprocessed POWER: 3 skewed continuous columns and 3 columns
    of a few discrete levels plus uniform dequantization noise, each standardized."""
    cont = np.column_stack([rng.gamma(2.0, 1.0, n), rng.lognormal(0.0, 0.5, n),
                            rng.normal(0.0, 1.0, n)])
    disc = np.column_stack([rng.choice(4, n, p=[0.7, 0.15, 0.1, 0.05]),
                            rng.choice(3, n, p=[0.8, 0.15, 0.05]),
                            rng.choice(20, n)]).astype(np.float64)
    X = np.column_stack([cont, disc + rng.uniform(0.0, 1.0, disc.shape)])
    return (X - X.mean(axis=0)) / X.std(axis=0)


@pytest.mark.skipif(not FULL, reason="POWER size (minutes): DENSBENCH_BENCH_FULL=1 only")
@pytest.mark.parametrize("h", [0.05, 0.19])
def test_kde_tree_power(benchmark, h):
    rng = np.random.default_rng(0)
    train, test = power_like(1_600_000, rng), power_like(200_000, rng)
    benchmark.group = "kde-tree-power"

    t0 = time.perf_counter()
    est = db.estimators.make("kde", bandwidth=h, tolerance=TOLERANCE).fit(train)
    benchmark.extra_info["fit_s"] = time.perf_counter() - t0
    test = test[:N_POWER_QUERY]
    got = benchmark.pedantic(est.score_samples, args=(test,), rounds=1, iterations=1)
    record_speed(benchmark, len(test))
    diag = est.diagnostics(test)
    rows = np.linspace(0, len(test) - 1, 50).astype(int)
    diff = np.abs(got[rows] - direct_kde(test[rows], train, h))
    benchmark.extra_info.update({
        "algorithm": est.algorithm_, "max_bound": float(np.max(diag["kde_error_bound"][0])),
        "mean_terms_summed": float(np.mean(diag["kde_terms_summed"][0])),
        "max_abs_diff_direct": float(np.max(diff)),
        "test_loglik": float(np.mean(got)),
        "test_loglik_se": float(np.std(got) / math.sqrt(len(got)))})
    assert est.algorithm_ == "tree" and np.all(diff <= diag["kde_error_bound"][0][rows])


@pytest.mark.skipif(not FULL, reason="POWER size (about 10 minutes): DENSBENCH_BENCH_FULL=1 only")
def test_kde_cv_power(benchmark):
    rng = np.random.default_rng(0)
    train, val = power_like(1_600_000, rng), power_like(20_000, rng)
    benchmark.group = "kde-cv-power"
    est = db.estimators.make("kde", bandwidth="cv", tolerance=TOLERANCE)
    benchmark.pedantic(est.fit, args=(train, val), rounds=1, iterations=1)
    sigma = math.sqrt(float(np.mean(np.var(train, axis=0, ddof=1))))
    scott = sigma * len(train) ** (-1.0 / (train.shape[1] + 4))
    benchmark.extra_info.update({
        "algorithm": est.algorithm_, "bandwidth": est.bandwidth_, "scott": scott,
        "coarse_scored": len(est.cv_coarse_), "fine_scored": len(est.selection_)})
    # the choice is the best of the fine stage, inside the coarse grid's span
    assert est.bandwidth_ == max(est.selection_, key=lambda hs: (hs[1], -hs[0]))[0]
    assert est.cv_coarse_[0][0] < est.bandwidth_ < est.cv_coarse_[-1][0]
