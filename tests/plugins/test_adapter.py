"""scikit-learn density estimators by spec, through the adapter: their own figures."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KernelDensity

import densbench as db
from densbench.estimators.base import LikelihoodKind
from densbench.runner.plan import SuiteError, parse_suite

KD, GM = "sklearn.neighbors:KernelDensity", "sklearn.mixture:GaussianMixture"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-2, 0.5, (150, 2)), rng.normal(1, 1.0, (150, 2))])
    return X, rng.normal(size=(40, 2))


def test_kernel_density_figures_are_sklearns(data):
    X, Y = data
    est = db.estimators.make(KD, bandwidth=0.4).fit(X)
    ref = KernelDensity(bandwidth=0.4).fit(X).score_samples(Y)
    np.testing.assert_array_equal(est.score_samples(Y), ref)
    assert est.score(Y) == pytest.approx(ref.mean(), rel=1e-15)
    assert type(est).likelihood is LikelihoodKind.EXACT and type(est).can_sample
    a, b = est.sample(50, random_state=3), est.sample(50, random_state=3)
    assert a.shape == (50, 2) and np.array_equal(a, b)
    assert not np.array_equal(a, est.sample(50, random_state=4))


def test_gaussian_mixture_figures_and_seeded_samples(data):
    X, Y = data
    est = db.estimators.make(GM, n_components=2, random_state=0).fit(X)
    ref = GaussianMixture(n_components=2, random_state=0).fit(X)
    np.testing.assert_allclose(est.score_samples(Y), ref.score_samples(Y), rtol=1e-12)
    a, b = est.sample(30, random_state=1), est.sample(30, random_state=1)
    assert a.shape == (30, 2) and np.array_equal(a, b)  # (X, labels) -> X, seeded
    assert est.model_.random_state == 0  # the estimator's own seed is left as it was
    assert est.n_parameters() == ref._n_parameters()


def test_likelihood_kind_from_class_or_suite(data):
    X, _ = data
    est = db.estimators.make(KD, likelihood="lower_bound")
    assert est.likelihood is LikelihoodKind.LOWER_BOUND
    assert db.estimators.get(KD).likelihood is LikelihoodKind.EXACT
    assert est.fit(X).get_params()["bandwidth"] == 1.0


def test_bad_params_refused_before_anything_runs():
    with pytest.raises(SuiteError, match=r"KernelDensity.*bandwidth"):
        parse_suite(f'[[estimators]]\nname = "{KD}"\n[estimators.params]\nbandwidth = -1\n'
                    '[[datasets]]\nname = "banana"\n', "s.toml")
    with pytest.raises(SuiteError, match=r"likelihood must be"):
        parse_suite(f'[[estimators]]\nname = "{KD}"\n[estimators.params]\nlikelihood = "x"\n'
                    '[[datasets]]\nname = "banana"\n', "s.toml")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) nope"):
        db.estimators.make(KD, nope=1)


@pytest.mark.slow
def test_adapted_classes_pass_the_public_checks():
    from densbench.testing import CHECKS, check_estimator

    check_estimator(GM, scale_dependent=True)  # reg_covar is in absolute units
    kd = db.estimators.get(KD)
    for name, check in CHECKS.items():
        if not name.startswith("any_scale"):  # a fixed bandwidth is in absolute units
            check(kd)
