"""The estimator contract, checked for EVERY registered estimator (no per-model test code),
with the public checks (:mod:`densbench.testing`) a user runs on their own estimator.

A new estimator is covered by registering it and giving it ``test_params()``.
"""

from __future__ import annotations

import numpy as np
import pytest

import densbench as db
from densbench.estimators.base import DensityEstimator
from densbench.testing import CHECKS, check_estimator, parametrize_with_checks

from .known_failures import KNOWN_FAILURES, SCALE_DEPENDENT


@parametrize_with_checks(db.estimators.names(), known_failures=KNOWN_FAILURES,
                         scale_dependent=SCALE_DEPENDENT)
def test_contract(estimator, check):
    check(estimator)


def test_every_registered_name_is_its_class_name():
    for name in db.estimators.names():
        assert db.estimators.get(name).name == name


class Unseeded(DensityEstimator):
    """A Gaussian that samples from NumPy's global generator (breaks the seed contract)."""

    def _fit(self, X, X_val):
        self.mean_, self.std_ = X.mean(0), X.std(0)

    def _score_samples(self, X):
        z = (X - self.mean_) / self.std_
        return (-0.5 * (z ** 2).sum(1) - np.log(self.std_).sum()
                - 0.5 * X.shape[1] * np.log(2 * np.pi))

    def _sample(self, n, rng):
        return self.mean_ + self.std_ * np.random.standard_normal((n, self.mean_.size))

    def _n_parameters(self):
        return 2 * self.mean_.size


def test_check_estimator_names_what_a_broken_estimator_breaks():
    with pytest.raises(AssertionError, match=r"^Unseeded: check sample: sample\(n, "
                       r"random_state=s\) must return the same samples for the same seed"):
        check_estimator(Unseeded)
    for check in ("declared", "fit_score", "normalized", "refuse_bad_fit"):
        CHECKS[check](Unseeded)  # the rest of it follows the contract
