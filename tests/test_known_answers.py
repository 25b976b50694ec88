"""End-to-end known answers on synthetic data with an exact density.

The gap to the truth is densbench's core correctness signal: these checks fail if the
estimator, the dataset's density, the scoring or the KL estimate is wrong.
"""

from __future__ import annotations

import numpy as np
import pytest

import densbench as db
from densbench.metrics.truth import kl_to_truth

SIZES = {"n_train": 5000, "n_val": 1000, "n_test": 5000}


@pytest.mark.parametrize("dataset, k", [("eight_gaussians", 8), ("grid_5x5", 25)])
def test_gmm_with_the_right_components_reaches_the_truth(dataset, k):
    ds = db.data.load(dataset, seed=0, **SIZES)
    est = db.estimators.make("gmm", n_components=k, random_state=0).fit(ds.train)
    kl, se = kl_to_truth(ds.log_prob(ds.test), est.score_samples(ds.test))
    assert abs(kl) < 0.05 and se < 0.02
    # ...and the check has teeth: too few components leave a clear gap
    coarse = db.estimators.make("gmm", n_components=k // 2, random_state=0).fit(ds.train)
    kl_coarse, _ = kl_to_truth(ds.log_prob(ds.test), coarse.score_samples(ds.test))
    assert kl_coarse > 0.2


@pytest.mark.parametrize("name", db.estimators.names())
def test_kl_to_truth_is_nonnegative_within_3_se(name):
    ds = db.data.load("banana", seed=1, n_train=2000, n_val=500, n_test=2000)
    cls = db.estimators.get(name)
    if cls.likelihood is db.estimators.LikelihoodKind.NONE:
        pytest.skip("implicit model")
    if "image_shape" in cls.test_params():
        pytest.skip("an image model (its test settings are for tiny images, not 2-D rows)")
    est = db.estimators.make(name, **cls.test_params()).fit(ds.train, ds.val)
    kl, se = kl_to_truth(ds.log_prob(ds.test), est.score_samples(ds.test))
    assert kl >= -3 * se
    assert np.isfinite(kl)
