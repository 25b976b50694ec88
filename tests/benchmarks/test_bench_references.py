"""densbench beside the implementation a user would otherwise pick, in ONE group each, so
pytest-benchmark shows the ratio.

- kde-score-digits: exact Gaussian KDE scoring on scikit-learn's digits (1437 train, 360
  test, bandwidth 1.0): densbench ``kde`` vs scikit-learn ``KernelDensity`` vs SciPy
  ``gaussian_kde`` (covariance h^2 I through whitened data is not needed for timing; SciPy
  evaluates the same number of kernel terms).
- kde-score-2d: 20,000 x 20,000 in 2-D, bandwidth 0.1.
- gmm-fit-10d: 5 full-covariance components on 50,000 10-D points, densbench ``gmm`` vs
  scikit-learn ``GaussianMixture`` with the same settings (densbench uses it as its EM
  engine, so the ratio measures densbench's overhead).
"""

from __future__ import annotations

import numpy as np
import pytest

import densbench as db


@pytest.mark.parametrize("impl", ["densbench", "sklearn", "scipy"])
def test_kde_score_digits(benchmark, impl, digits_raw):
    train, test = digits_raw
    benchmark.group = "kde-score-digits"
    if impl == "densbench":
        est = db.estimators.make("kde", bandwidth=1.0).fit(train)
        fn = est.score_samples
    elif impl == "sklearn":
        from sklearn.neighbors import KernelDensity

        fn = KernelDensity(bandwidth=1.0).fit(train).score_samples
    else:
        from scipy.stats import gaussian_kde

        kde = gaussian_kde(train.T + 1e-9 * np.random.default_rng(0).standard_normal(
            train.T.shape), bw_method=0.3)
        fn = lambda Z: kde.logpdf(Z.T)  # noqa: E731
    benchmark.extra_info["queries"] = len(test)
    benchmark(fn, test)


@pytest.mark.parametrize("impl", ["densbench", "sklearn", "scipy"])
def test_kde_score_2d(benchmark, impl, data_2d):
    train, _, test = data_2d
    benchmark.group = "kde-score-2d"
    if impl == "densbench":
        fn = db.estimators.make("kde", bandwidth=0.1).fit(train).score_samples
    elif impl == "sklearn":
        from sklearn.neighbors import KernelDensity

        fn = KernelDensity(bandwidth=0.1).fit(train).score_samples
    else:
        from scipy.stats import gaussian_kde

        kde = gaussian_kde(train.T)
        fn = lambda Z: kde.logpdf(Z.T)  # noqa: E731
    benchmark.extra_info["queries"] = len(test)
    benchmark.pedantic(fn, args=(test,), rounds=1, iterations=1)


@pytest.mark.parametrize("impl", ["densbench", "sklearn"])
def test_gmm_fit_10d(benchmark, impl, data_10d):
    train = data_10d[0]
    benchmark.group = "gmm-fit-10d"
    if impl == "densbench":
        fn = lambda: db.estimators.make("gmm", n_components=5, random_state=0).fit(train)  # noqa: E731
    else:
        from sklearn.mixture import GaussianMixture

        fn = lambda: GaussianMixture(5, init_params="k-means++", random_state=0).fit(train)  # noqa: E731
    benchmark.pedantic(fn, rounds=1, iterations=1)
