"""The estimator contract, checked for EVERY registered estimator (no per-model test code),
with the public checks (:mod:`densbench.testing`) a user runs on their own estimator.

A new estimator is covered by registering it and giving it ``test_params()``.
"""

from __future__ import annotations

import numpy as np
import pytest

import densbench as db
from densbench.estimators.base import DensityEstimator
from densbench.estimators.params import Interval, ListOf
from densbench.testing import CHECKS, check_data, check_estimator, parametrize_with_checks

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


# -- image models: toy estimators that follow the contract, and ones that break it ---------

_SHAPE = [ListOf(Interval(int, 1, None), min_len=2, max_len=3,
                 phrase="(H, W) or (H, W, C), positive ints")]


class IndependentPixels(DensityEstimator):
    """Independent categorical pixels (smoothed frequencies): a discrete image model."""

    image_model = True
    discrete_native = True
    _parameter_constraints = {"image_shape": [None, *_SHAPE],
                              "levels": [None, Interval(int, 2, None)]}

    def __init__(self, *, image_shape=None, levels=None, random_state=None):
        self.image_shape, self.levels, self.random_state = image_shape, levels, random_state

    @classmethod
    def test_params(cls):
        return {"image_shape": (4, 4), "levels": 4}

    def _check(self, X):
        if self.image_shape is None or X.shape[1] != int(np.prod(self.image_shape)):
            raise ValueError(f"{self.name}: rows of {X.shape[1]} values are not images of "
                             f"shape {self.image_shape}")
        if np.any((X != np.round(X)) | (X < 0) | (X >= self.levels)):
            raise ValueError(f"{self.name}: X must hold levels 0..{self.levels - 1}")

    def _fit(self, X, X_val):
        self._check(X)
        counts = np.stack([(X == v).sum(0) for v in range(self.levels)], axis=1) + 0.5
        self.log_p_ = np.log(counts / counts.sum(1, keepdims=True))   # (d, levels)

    def _score_samples(self, X):
        self._check(X)
        return self.log_p_[np.arange(X.shape[1]), X.astype(int)].sum(1)

    def _sample(self, n, rng):
        u = rng.random((n, self.log_p_.shape[0], 1))
        return (u > np.cumsum(np.exp(self.log_p_), 1)[None]).sum(2).astype(float)

    def _n_parameters(self):
        return int(self.log_p_.size)


class UnnormalizedPixels(IndependentPixels):
    """Pixels scored by their smoothed counts, not frequencies (breaks normalization)."""

    def _score_samples(self, X):
        return super()._score_samples(X) + X.shape[1] * np.log(2.0)


class ShapeBlindPixels(IndependentPixels):
    """Independent pixels that never compare a row's width with the image shape."""

    def _check(self, X):
        if np.any((X != np.round(X)) | (X < 0) | (X >= self.levels)):
            raise ValueError(f"{self.name}: X must hold levels 0..{self.levels - 1}")


class LevelBlindPixels(IndependentPixels):
    """Independent pixels whose samples are not levels (continuous noise on them)."""

    def _sample(self, n, rng):
        return super()._sample(n, rng) + rng.random((n, self.log_p_.shape[0]))


class PixelGaussian(Unseeded):
    """Independent Gaussian pixels of dequantized images: a continuous image model."""

    image_model = True
    _parameter_constraints = {"image_shape": [None, *_SHAPE]}

    def __init__(self, *, image_shape=None, random_state=None):
        self.image_shape, self.random_state = image_shape, random_state

    @classmethod
    def test_params(cls):
        return {"image_shape": (3, 4)}

    def _fit(self, X, X_val):
        if self.image_shape is None or X.shape[1] != int(np.prod(self.image_shape)):
            raise ValueError(f"{self.name}: rows are not images of shape {self.image_shape}")
        super()._fit(X, X_val)

    def _sample(self, n, rng):
        return self.mean_ + self.std_ * rng.standard_normal((n, self.mean_.size))


class HeavyPixelGaussian(PixelGaussian):
    """A continuous image model whose density integrates to e (breaks normalization)."""

    def _score_samples(self, X):
        return super()._score_samples(X) + 1.0


def test_image_models_that_follow_the_contract_pass_every_check():
    check_estimator(IndependentPixels)
    check_estimator(PixelGaussian)
    X = check_data(IndependentPixels)[0]
    assert X.shape[1] == 16 and set(np.unique(X)) == {0.0, 1.0, 2.0, 3.0}
    Y = check_data(PixelGaussian)[0]   # dequantized: the runner's view of the images
    assert Y.shape[1] == 12 and 0.0 <= Y.min() and Y.max() < 1.0 and len(np.unique(Y)) > 100


@pytest.mark.parametrize(("cls", "message"), [
    (UnnormalizedPixels, r"^UnnormalizedPixels: check sums_to_one: the probabilities of all "
     r"256 images of shape \(2, 2\) at 4 levels must sum to 1 \(1e-4\) \(got 16\.0"),
    (ShapeBlindPixels, r"^ShapeBlindPixels: check refuse_bad_fit: fit on data with rows one "
     r"value short of the image shape must raise ValueError"),
    (LevelBlindPixels, r"^LevelBlindPixels: check sample: samples of a discrete image model "
     r"must be its levels 0\.\.3"),
    (HeavyPixelGaussian, r"^HeavyPixelGaussian: check normalized: an exact log-density must "
     r"integrate to 1 \(importance sampling on 2x2 images gave 2\.7"),
])
def test_check_estimator_names_what_a_broken_image_model_breaks(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_estimator(cls)
