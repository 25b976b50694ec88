"""Sequence datasets: the HMM truth checked against references this module did not write.

- log_prob equals brute-force enumeration of every state path (SciPy's Gaussian densities);
- exp(log_prob) integrates to 1 on a 2-D grid (two steps of 1-D observations);
- the sampler's state paths and emissions have the HMM's statistics;
- the dataset: registry, shapes, sequence_shape, splits, parameters, and bad values.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import densbench as db
from densbench.data.base import Dataset
from densbench.data.sequences import GaussianHMMTruth, hmm_forward


def brute_force_log_prob(startprob, transmat, means, covs, X, n_steps):
    """log sum over all K^T state paths of p(path) prod_t N(x_t; means[z_t], covs[z_t])."""
    K, D = np.shape(means)
    out = []
    for row in np.asarray(X).reshape(len(X), n_steps, D):
        total = 0.0
        for path in itertools.product(range(K), repeat=n_steps):
            p = startprob[path[0]]
            for a, b in itertools.pairwise(path):
                p *= transmat[a][b]
            for t, k in enumerate(path):
                p *= multivariate_normal(means[k], covs[k]).pdf(row[t])
            total += p
        out.append(np.log(total))
    return np.array(out)


def tiny_hmm(K: int, D: int, seed: int):
    rng = np.random.default_rng(seed)
    startprob = rng.dirichlet(np.ones(K))
    transmat = rng.dirichlet(np.ones(K), size=K)
    means = rng.normal(0, 1.5, (K, D))
    A = rng.normal(size=(K, D, D))
    covs = A @ np.swapaxes(A, 1, 2) / D + 0.3 * np.eye(D)
    return startprob, transmat, means, covs


@pytest.mark.parametrize(("K", "D", "T"), [(2, 1, 3), (3, 2, 4), (3, 1, 1)])
def test_log_prob_matches_brute_force_enumeration(K, D, T):
    params = tiny_hmm(K, D, seed=K * 10 + T)
    truth = GaussianHMMTruth(*params, n_steps=T)
    X = np.random.default_rng(1).normal(0, 2, (6, T * D))
    np.testing.assert_allclose(truth.log_prob(X), brute_force_log_prob(*params, X, T),
                               rtol=1e-10, atol=1e-10)


def test_forbidden_transitions_are_exact_zeros():
    # a left-to-right chain: state 1 never returns to 0, so paths through 1 -> 0 count 0
    start, trans = [1.0, 0.0], [[0.5, 0.5], [0.0, 1.0]]
    means, covs = [[0.0], [3.0]], [[[1.0]], [[1.0]]]
    X = np.array([[0.1, 2.5, -0.3], [3.0, 3.0, 0.0]])
    truth = GaussianHMMTruth(start, trans, means, covs, n_steps=3)
    with np.errstate(divide="ignore"):
        expected = brute_force_log_prob(np.array(start), np.array(trans), np.array(means),
                                        np.array(covs), X, 3)
    np.testing.assert_allclose(truth.log_prob(X), expected, rtol=1e-10)


def test_density_integrates_to_one_over_two_steps():
    truth = GaussianHMMTruth(*tiny_hmm(3, 1, seed=5), n_steps=2)
    h = 0.02
    g = np.arange(-9 + h / 2, 9, h)
    xx, yy = np.meshgrid(g, g)
    total = float(np.exp(truth.log_prob(np.column_stack([xx.ravel(), yy.ravel()]))).sum()
                  * h * h)
    assert abs(total - 1.0) <= 1e-3, total


def test_forward_is_vectorized_over_sequences_like_one_at_a_time():
    # and far in the tails (log-densities near -1e4 per step) it neither under- nor overflows
    rng = np.random.default_rng(0)
    lf = rng.normal(-2, 1, (7, 5, 3))
    start, trans = rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(3), size=3)
    _, batch = hmm_forward(start, trans, lf)
    single = [hmm_forward(start, trans, lf[i:i + 1])[1][0] for i in range(7)]
    np.testing.assert_allclose(batch, single, rtol=1e-13)
    _, far = hmm_forward(start, trans, lf - 1e4)
    np.testing.assert_allclose(far, batch - 5e4, rtol=1e-13)


def test_samples_have_the_chain_and_emission_statistics():
    ds = db.data.load("hmm_seq", n_train=1, n_val=1, n_test=1)
    truth = ds.truth
    X, states = truth.sample_with_states(20_000, np.random.default_rng(0))
    n, T = states.shape
    assert X.shape == (n, truth.dim) and T == 16
    # start frequencies and transition frequencies (binomial SEs are below 0.004)
    start_freq = np.bincount(states[:, 0], minlength=3) / n
    np.testing.assert_allclose(start_freq, truth.startprob, atol=0.015)
    counts = np.zeros((3, 3))
    np.add.at(counts, (states[:, :-1].ravel(), states[:, 1:].ravel()), 1)
    np.testing.assert_allclose(counts / counts.sum(axis=1, keepdims=True), truth.transmat,
                               atol=0.01)
    # emissions given the state: means and covariances
    frames, labels = X.reshape(-1, 2), states.ravel()
    for k in range(3):
        np.testing.assert_allclose(frames[labels == k].mean(axis=0), truth.means[k], atol=0.02)
        np.testing.assert_allclose(np.cov(frames[labels == k].T), truth.covs[k], atol=0.03)


def test_dataset_shapes_sequence_shape_and_provenance():
    ds = db.data.load("hmm_seq", seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (5000, 1000, 5000)
    assert ds.dim == 32 and ds.sequence_shape == (16, 2) and ds.kind == "continuous"
    assert ds.params == {"n_train": 5000, "n_val": 1000, "n_test": 5000, "n_steps": 16}
    short = db.data.load("hmm_seq", seed=0, n_train=5, n_val=2, n_test=3, n_steps=4)
    assert short.train.shape == (5, 8) and short.sequence_shape == (4, 2)
    assert "hmm_seq" in db.data.names() and "\n" not in db.data.describe("hmm_seq")


def test_splits_depend_on_the_seed_and_the_truth_does_not():
    a = db.data.load("hmm_seq", seed=0, n_train=50, n_val=5, n_test=5)
    b = db.data.load("hmm_seq", seed=1, n_train=50, n_val=5, n_test=5)
    assert not np.array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.log_prob(b.test), b.log_prob(b.test))
    np.testing.assert_array_equal(a.train, db.data.load("hmm_seq", seed=0, n_train=50,
                                                        n_val=5, n_test=5).train)


@pytest.mark.parametrize("bad", [{"n_steps": 0}, {"n_steps": 2.5}, {"n_train": 0}])
def test_bad_parameters_name_the_dataset(bad):
    with pytest.raises(ValueError, match="^dataset hmm_seq: "):
        db.data.load("hmm_seq", **bad)


def test_truth_validates_its_parameters():
    good = tiny_hmm(2, 1, seed=0)
    with pytest.raises(ValueError, match="transmat"):
        GaussianHMMTruth(good[0], [[0.5, 0.6], [0.5, 0.5]], *good[2:], n_steps=2)
    with pytest.raises(ValueError, match="startprob"):
        GaussianHMMTruth([0.5, 0.6], *good[1:], n_steps=2)
    with pytest.raises(ValueError, match="positive definite"):
        GaussianHMMTruth(*good[:3], -np.ones((2, 1, 1)), n_steps=2)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        GaussianHMMTruth(*good, n_steps=4).log_prob(np.zeros((3, 5)))


def test_dataset_sequence_shape_must_cover_the_columns():
    X = np.zeros((4, 6))
    assert Dataset("toy", 0, X, X, X, sequence_shape=[3, 2]).sequence_shape == (3, 2)
    with pytest.raises(ValueError, match=r"dataset toy: sequence_shape .* T \* D = 6"):
        Dataset("toy", 0, X, X, X, sequence_shape=(4, 2))
