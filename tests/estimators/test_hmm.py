"""The Gaussian HMM estimator: exact likelihood, hmmlearn agreement, fit quality, validation.

References nobody here wrote: brute-force enumeration of every state path with SciPy's
Gaussian densities, and hmmlearn's own (per-sequence) E-step and ``score``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM
from threadpoolctl import threadpool_limits

import densbench as db
from densbench.estimators.hmm import _BatchedGaussianHMM

from ..data.test_sequences import brute_force_log_prob, tiny_hmm


def fitted_with(params, T: int, covariance_type: str = "full"):
    """An ``hmm`` estimator fitted briefly, then set to the known ``params``."""
    startprob, transmat, means, covs = params
    K, D = means.shape
    X = np.random.default_rng(0).normal(size=(40, T * D))
    est = db.estimators.make("hmm", n_states=K, n_iter=1, sequence_shape=(T, D),
                             covariance_type=covariance_type).fit(X)
    est.model_.startprob_, est.model_.transmat_, est.model_.means_ = startprob, transmat, means
    est.model_.covars_ = covs
    return est


@pytest.mark.parametrize(("K", "D", "T"), [(2, 1, 3), (3, 2, 4)])
def test_score_samples_with_known_parameters_matches_brute_force(K, D, T):
    params = tiny_hmm(K, D, seed=K * 10 + T)
    est = fitted_with(params, T)
    X = np.random.default_rng(1).normal(0, 2, (6, T * D))
    np.testing.assert_allclose(est.score_samples(X), brute_force_log_prob(*params, X, T),
                               rtol=1e-10, atol=1e-10)
    # the same parameters as the dataset's truth give the same numbers
    truth = db.data.sequences.GaussianHMMTruth(*params, n_steps=T)
    np.testing.assert_allclose(est.score_samples(X), truth.log_prob(X), rtol=1e-12)


def test_score_samples_matches_hmmlearn_score_per_sequence():
    params = tiny_hmm(3, 2, seed=7)
    est = fitted_with(params, 5)
    X = np.random.default_rng(2).normal(size=(20, 10))
    expected = [est.model_.score(row.reshape(5, 2)) for row in X]
    np.testing.assert_allclose(est.score_samples(X), expected, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_batched_estep_gives_hmmlearn_statistics(covariance_type):
    rng = np.random.default_rng(3)
    X, lengths = rng.normal(size=(6 * 5, 2)), np.full(6, 5)
    startprob, transmat, means, _ = tiny_hmm(3, 2, seed=4)
    models = []
    for cls in (GaussianHMM, _BatchedGaussianHMM):
        m = cls(n_components=3, covariance_type=covariance_type, init_params="")
        m.startprob_, m.transmat_, m.means_ = startprob, transmat, means
        m.covars_ = {"full": np.stack([np.eye(2)] * 3), "diag": np.ones((3, 2)),
                     "spherical": np.ones(3), "tied": np.eye(2)}[covariance_type]
        m.n_features = 2
        models.append(m)
    (ref, ref_ll), (got, got_ll) = (m._do_estep(X, lengths) for m in models)
    assert got_ll == pytest.approx(ref_ll, rel=1e-12)
    assert set(got) == set(ref)
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-9, atol=1e-12, err_msg=key)


@pytest.fixture(scope="module")
def hmm_seq():
    return db.data.load("hmm_seq", seed=0, n_train=1500, n_val=300, n_test=2000)


def test_fit_on_the_synthetic_hmm_is_within_005_nats_of_the_truth(hmm_seq):
    ds = hmm_seq
    est = db.estimators.make("hmm", n_states=[2, 3, 4], sequence_shape=ds.sequence_shape)
    est.fit(ds.train, ds.val)
    gap = float(np.mean(ds.log_prob(ds.test) - est.score_samples(ds.test)))
    assert est.n_states_ == 3 and est.converged_
    assert abs(gap) < 0.05, gap
    # the means are the truth's up to the order of the states
    order = np.argsort(est.means_[:, 0] + 10 * est.means_[:, 1])
    np.testing.assert_allclose(est.means_[order], ds.truth.means[[0, 1, 2]], atol=0.1)
    # samples look like the truth: their mean true log-likelihood is the test set's
    samples = est.sample(2000, random_state=0)
    assert abs(np.mean(ds.log_prob(samples)) - np.mean(ds.log_prob(ds.test))) < 0.5


def test_runs_kept_on_validation_at_least_as_strong_as_hmmlearn_default():
    """Three EM runs, the one best on validation data kept, against stock hmmlearn's default
    fit (a Dirichlet draw for the start and transition probabilities, k-means means, 10
    iterations) with the same seed: the held-out mean log-likelihood is not below it by
    more than 2 paired SE over test sequences."""
    ds = db.data.load("hmm_seq", seed=1, n_train=200, n_val=200, n_test=300)
    random_state = 1
    est = db.estimators.make("hmm", n_states=3, sequence_shape=(16, 2),
                             random_state=random_state).fit(ds.train, ds.val)
    assert est.init_criterion_ == "val_loglik" and len(est.init_scores_) == 3
    assert max(est.init_scores_) == pytest.approx(est.score(ds.val), abs=1e-9)
    stock = GaussianHMM(n_components=3, covariance_type="full", random_state=random_state)
    with threadpool_limits(limits=1):  # 2 x 2 covariances: threads only contend
        stock.fit(ds.train.reshape(-1, 2), np.full(len(ds.train), 16))
        theirs = np.array([stock.score(x.reshape(16, 2)) for x in ds.test])
    diff = est.score_samples(ds.test) - theirs
    assert diff.mean() >= -2.0 * diff.std(ddof=1) / np.sqrt(diff.size) - 1e-9


def test_run_kept_on_training_likelihood_without_validation(hmm_seq):
    est = db.estimators.make("hmm", n_states=3, sequence_shape=(16, 2), n_iter=20,
                             n_init=2).fit(hmm_seq.train[:300])
    assert est.init_criterion_ == "train_loglik" and len(est.init_scores_) == 2
    # the kept run's last E-step log-likelihood per sequence (before its last M-step)
    assert max(est.init_scores_) == pytest.approx(
        est.model_.monitor_.history[-1] / 300, abs=1e-9)


def test_sampling_is_seeded_and_flattens_sequences(hmm_seq):
    est = db.estimators.make("hmm", n_states=3, sequence_shape=(16, 2)).fit(hmm_seq.train)
    a = est.sample(50, random_state=1)
    assert a.shape == (50, 32)
    np.testing.assert_array_equal(a, est.sample(50, random_state=1))
    assert not np.array_equal(a, est.sample(50, random_state=2))


def test_rows_without_sequence_shape_are_sequences_of_scalars():
    X = np.random.default_rng(0).normal(size=(100, 5))
    est = db.estimators.make("hmm", n_states=2).fit(X)
    assert est.sequence_shape_ == (5, 1) and est.means_.shape == (2, 1)


def test_sequence_shape_must_cover_the_columns():
    X = np.zeros((20, 10))
    with pytest.raises(ValueError, match=r"^hmm: sequence_shape \(8, 8\) needs 64 columns; "
                                         r"got 10$"):
        db.estimators.make("hmm", sequence_shape=(8, 8)).fit(X)


@pytest.mark.parametrize(("param", "value"), [
    ("sequence_shape", (0, 2)), ("sequence_shape", (2,)), ("sequence_shape", "8x8"),
    ("n_states", 0), ("n_states", []), ("covariance_type", "round"), ("tol", 0.0),
    ("n_iter", 0), ("n_init", 1.5)])
def test_bad_hyperparameters_are_named(param, value):
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match=f"^hmm: {param} must be"):
        db.estimators.make("hmm", **{param: value}).fit(X)


def test_too_many_states_for_the_data_are_refused_or_skipped():
    X = np.random.default_rng(0).normal(size=(3, 2))  # 6 observations
    with pytest.raises(ValueError, match="^hmm: n_states 7 exceeds"):
        db.estimators.make("hmm", n_states=7).fit(X)
    est = db.estimators.make("hmm", n_states=[1, 2, 7]).fit(X)
    assert [k for k, _ in est.selection_] == [1, 2]


def test_hmmlearn_messages_are_kept_not_printed(capfd):
    # 4 states on 6 scalar observations: hmmlearn logs "degenerate solution"
    X = np.random.default_rng(0).normal(size=(3, 2))
    est = db.estimators.make("hmm", n_states=4).fit(X)
    assert any("degenerate" in m for m in est.fit_messages_)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
