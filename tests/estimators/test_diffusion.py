"""Diffusion: with Gaussian data N(m, s^2) the optimal noise predictor is known in closed
form, E[eps | x_t] = sqrt(1 - abar_t) (x_t - sqrt(abar_t) m) / (abar_t s^2 + 1 - abar_t),
and with it the variational bound approaches the exact log-density (SciPy) as T grows,
never exceeding it on average; a trained model improves on its initial bound; evaluation
and sampling are seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import densbench as db
from densbench.estimators.diffusion import Diffusion, variance_schedule

M, S = 1.0, 2.0


def optimal_predictor(T: int, schedule: str = "cosine"):
    abar = torch.as_tensor(np.cumprod(1.0 - variance_schedule(T, schedule)),
                           dtype=torch.float32)

    def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = abar[t - 1][:, None]
        return torch.sqrt(1 - ab) / (ab * S**2 + 1 - ab) * (x - torch.sqrt(ab) * M)

    return predict


def gaussian_model(T: int, schedule: str = "cosine", **params) -> Diffusion:
    return Diffusion.from_noise_predictor(optimal_predictor(T, schedule), 1, T=T,
                                          schedule=schedule, **params)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_optimal_predictor_bound_is_within_005_nats_of_the_truth(schedule):
    X = np.random.default_rng(0).normal(M, S, size=(20000, 1))
    truth = stats.norm(M, S).logpdf(X[:, 0])
    gap = truth - gaussian_model(1000, schedule).score_samples(X)
    mean, se = gap.mean(), gap.std(ddof=1) / np.sqrt(len(gap))
    assert se < 0.01
    assert abs(mean) < 0.05
    assert mean > -3 * se  # a lower bound: not above the truth beyond the MC error


def test_bound_tightens_with_T_and_is_below_the_truth_per_point():
    """Each of 50 points repeated 400 times: the bound averaged over the noise draws is
    below the exact log-density (up to 4 MC standard errors) at every point, and the mean
    gap shrinks from T = 20 to T = 1000."""
    x0 = np.random.default_rng(1).normal(M, S, size=50)
    X = np.repeat(x0, 400)[:, None]
    truth = stats.norm(M, S).logpdf(x0)
    gaps = {}
    for T in (20, 1000):
        b = gaussian_model(T).score_samples(X).reshape(50, 400)
        mean, se = b.mean(1), b.std(1, ddof=1) / np.sqrt(400)
        assert np.all(mean <= truth + 4 * se), T
        gaps[T] = float(np.mean(truth - mean))
    assert gaps[20] > gaps[1000]
    assert gaps[20] < 0.2 and abs(gaps[1000]) < 0.05


def test_diagnostics_mc_se_positive_and_seeded():
    est = gaussian_model(50, random_state=3)
    X = np.linspace(-2, 4, 30)[:, None]
    a, b = est.diagnostics(X), est.diagnostics(X)
    assert set(a) == {"bound_mc_se", "bound_mean", "prior_kl", "diffusion_kl"}
    for key in a:
        np.testing.assert_array_equal(a[key][0], b[key][0])
    assert np.all(a["bound_mc_se"][0] > 0)
    assert a["bound_mean"][1] == "loglik" and a["bound_mc_se"][1] == "nats"
    assert np.all(a["prior_kl"][0] >= 0) and np.all(a["diffusion_kl"][0] >= 0)
    s = est.score_samples(X)
    np.testing.assert_array_equal(s, est.score_samples(X))
    assert not np.array_equal(s, gaussian_model(50, random_state=4).score_samples(X))


def test_mc_se_agrees_with_the_spread_over_evaluation_seeds():
    """The reported per-example Monte-Carlo SE of the bound (``bound_mc_se``: the spread
    over the default ``mc_repeats`` evaluations of one seed) against the spread of
    ``score_samples`` over 10 independent evaluation seeds, RMS over 100 rows: within 30%
    (a test that fails if the repeats shared their noise, or if a seed did not change it)."""
    X = np.linspace(-3.0, 5.0, 100)[:, None]
    runs = np.stack([gaussian_model(50, random_state=rs).score_samples(X) for rs in range(10)])
    se = gaussian_model(50, random_state=0).diagnostics(X)["bound_mc_se"][0]
    ratio = np.sqrt(np.mean(runs.std(axis=0, ddof=1) ** 2) / np.mean(se ** 2))
    assert 0.7 <= ratio <= 1.3, ratio


def test_optimal_predictor_samples_the_gaussian():
    x = gaussian_model(100).sample(4000, random_state=0)[:, 0]
    assert abs(x.mean() - M) < 0.15 and abs(x.std() - S) < 0.15


@pytest.fixture(scope="module")
def banana():
    ds = db.data.load("banana", seed=0, n_train=1000, n_val=200, n_test=300)
    return ds


def test_training_improves_the_bound_and_sampling_is_seeded(banana):
    params = {"T": 50, "hidden": 32, "batch_size": 128, "random_state": 0}
    # lr ~ 0: the initial network (same seed, same initialization)
    initial = db.estimators.make("diffusion", max_epochs=1, lr=1e-12, **params)
    trained = db.estimators.make("diffusion", max_epochs=25, lr=1e-2, **params)
    initial.fit(banana.train, banana.val)
    trained.fit(banana.train, banana.val)
    s0, s1 = initial.score(banana.test), trained.score(banana.test)
    assert s1 > s0 + 1.0
    assert s1 < float(np.mean(banana.log_prob(banana.test))) + 0.2  # a bound
    a = trained.sample(100, random_state=5)
    assert a.shape == (100, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, trained.sample(100, random_state=5))
    assert not np.array_equal(a, trained.sample(100, random_state=6))
    assert trained.sample(0).shape == (0, 2)
    se = trained.diagnostics(banana.test[:50])["bound_mc_se"][0]
    assert np.all(se > 0)


@pytest.mark.parametrize(("param", "value", "message"), [
    ("T", 0, "diffusion: T must be an int >= 1; got 0"),
    ("schedule", "quadratic", "diffusion: schedule must be one of 'cosine', 'linear'"),
    ("reverse_variance", "learned", "diffusion: reverse_variance must be one of"),
    ("loss", "hybrid", "diffusion: loss must be one of 'simple', 'bound'"),
    ("n_layers", -1, "diffusion: n_layers must be an int >= 0"),
])
def test_bad_hyperparameters_are_named(param, value, message):
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        db.estimators.make("diffusion", **{param: value}).fit(X)
