"""Sequence datasets with an exact log-density: a Gaussian-emission hidden Markov model.

A row of length ``T * D`` is a sequence of ``T`` steps of ``D``-dimensional observations in
row-major order (the dataset's ``sequence_shape = (T, D)``). The true log-likelihood of a
sequence is computed by the forward algorithm in log space (:func:`hmm_forward`), written
here and vectorized over sequences, so the truth does not depend on hmmlearn, the library
behind the ``hmm`` estimator; the tests check it against brute-force enumeration of every
state path.

Example:
    >>> import numpy as np
    >>> ds = hmm_seq(seed=0, n_train=100, n_val=10, n_test=10)
    >>> ds.train.shape, ds.sequence_shape, ds.has_truth
    ((100, 32), (16, 2), True)
    >>> bool(np.all(np.isfinite(ds.log_prob(ds.test))))
    True
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.typing import ArrayLike

from densbench.data.base import Dataset, Truth
from densbench.data.synthetic import GaussianMixtureTruth, make_synthetic

__all__ = ["GaussianHMMTruth", "hmm_forward", "hmm_seq", "log_matmul"]


def log_matmul(log_v: np.ndarray, P: np.ndarray) -> np.ndarray:
    """``log(exp(log_v) @ P)`` for rows ``log_v`` (n, K) and a non-negative matrix ``P``,
    without overflow or underflow: each row is shifted by its maximum before ``exp`` (the
    scaling of Rabiner 1989, section V.A, kept in log form). Rows of ``-inf`` give ``-inf``.

    Example:
        >>> np.exp(log_matmul(np.log([[0.5, 0.5]]) - 800.0, np.eye(2))) == 0.0  # exp underflows
        array([[ True,  True]])
        >>> log_matmul(np.log([[0.5, 0.5]]) - 800.0, np.eye(2)) + 800.0
        array([[-0.69314718, -0.69314718]])
    """
    shift = np.max(log_v, axis=1, keepdims=True)
    shift[~np.isfinite(shift)] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(np.exp(log_v - shift) @ P) + shift


def hmm_forward(startprob: np.ndarray, transmat: np.ndarray,
                log_frameprob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The forward algorithm in log space over ``n`` sequences of ``T`` steps at once.

    ``log_frameprob[i, t, k] = log p(x_it | z_it = k)`` (n, T, K); ``startprob`` (K,) and
    ``transmat`` (K, K) (row: from, column: to) are probabilities and may hold zeros for
    impossible starts and transitions. Returns ``log_alpha`` (n, T, K), with
    ``log_alpha[i, t, k] = log p(x_i1..x_it, z_it = k)``, and the log-likelihoods
    ``log p(x_i1..x_iT)`` (n,). One step is a matrix product (:func:`log_matmul`), O(n K^2).

    References:
        L. R. Rabiner, "A tutorial on hidden Markov models and selected applications in
        speech recognition", Proceedings of the IEEE 77(2), 257-286, 1989 (the forward
        procedure, eqs. 19-21, with the scaling of section V.A in log form).

    Example:
        >>> lf = np.log(np.array([[[0.5, 0.1], [0.2, 0.4]]]))  # one sequence, T = 2, K = 2
        >>> _, ll = hmm_forward(np.array([0.6, 0.4]), np.array([[0.7, 0.3], [0.2, 0.8]]), lf)
        >>> paths = [0.6 * 0.5 * 0.7 * 0.2, 0.6 * 0.5 * 0.3 * 0.4,
        ...          0.4 * 0.1 * 0.2 * 0.2, 0.4 * 0.1 * 0.8 * 0.4]
        >>> bool(np.isclose(ll[0], np.log(sum(paths))))
        True
    """
    log_frameprob = np.asarray(log_frameprob, dtype=np.float64)
    log_alpha = np.empty_like(log_frameprob)
    with np.errstate(divide="ignore"):
        log_alpha[:, 0] = np.log(startprob) + log_frameprob[:, 0]
    for t in range(1, log_frameprob.shape[1]):
        log_alpha[:, t] = log_matmul(log_alpha[:, t - 1], transmat) + log_frameprob[:, t]
    K = log_frameprob.shape[2]
    return log_alpha, log_matmul(log_alpha[:, -1], np.ones((K, 1)))[:, 0]


def _stochastic(p: np.ndarray, owner: str, label: str) -> np.ndarray:
    """Rows of ``p`` as probability vectors (finite, >= 0, summing to 1), or a ValueError."""
    if not np.all(np.isfinite(p)) or np.any(p < 0) \
            or not np.allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-8):
        raise ValueError(f"{owner}: {label} must be finite, >= 0 and sum to 1 (per row)")
    return p / p.sum(axis=-1, keepdims=True)


class GaussianHMMTruth(Truth):
    """A hidden Markov model with ``K`` states and Gaussian emissions, over ``T`` steps.

    ``z_1 ~ startprob``, ``z_t | z_{t-1} ~ transmat[z_{t-1}]``, ``x_t | z_t = k ~ N(means[k],
    covs[k])`` (full covariances). A point is the flattened sequence ``(x_1, ..., x_T)`` of
    ``dim = T * D`` numbers. ``log_prob`` sums over the ``K^T`` state paths exactly by
    :func:`hmm_forward`; the emission densities are those of
    :class:`~densbench.data.synthetic.GaussianMixtureTruth` (Cholesky, float64).

    Example:
        >>> t = GaussianHMMTruth([1.0, 0.0], [[0.5, 0.5], [0.5, 0.5]],
        ...                      [[0.0], [1.0]], [[[1.0]], [[1.0]]], n_steps=1)
        >>> round(float(t.log_prob(np.zeros((1, 1)))[0]), 6)  # N(0; 0, 1)
        -0.918939
    """

    def __init__(self, startprob: ArrayLike, transmat: ArrayLike, means: ArrayLike,
                 covs: ArrayLike, n_steps: int) -> None:
        owner = type(self).__name__
        start = np.asarray(startprob, dtype=np.float64)
        trans = np.asarray(transmat, dtype=np.float64)
        k = start.size
        if start.ndim != 1 or k < 1:
            raise ValueError(f"{owner}: startprob must be a non-empty 1-D array; "
                             f"got {start.shape}")
        if trans.shape != (k, k):
            raise ValueError(f"{owner}: transmat must have shape ({k}, {k}); got {trans.shape}")
        if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) \
                or n_steps < 1:
            raise ValueError(f"{owner}: n_steps must be an int >= 1; got {n_steps!r}")
        # the emission bank: equal weights, so component k's log-density is
        # component_log_prob[:, k] + log K (shapes and positive definiteness checked there)
        self._emissions = GaussianMixtureTruth(np.full(k, 1.0 / k), means, covs)
        self.startprob = _stochastic(start, owner, "startprob")
        self.transmat = _stochastic(trans, owner, "transmat")
        self.means = self._emissions.means
        self.covs = self._emissions.covs
        self.n_steps = int(n_steps)
        self.n_features = self._emissions.dim
        self.dim = self.n_steps * self.n_features
        self._chol = np.linalg.cholesky(self.covs)

    @property
    def n_states(self) -> int:
        return int(self.startprob.size)

    @property
    def sequence_shape(self) -> tuple[int, int]:
        return self.n_steps, self.n_features

    def frame_log_prob(self, X: np.ndarray) -> np.ndarray:
        """``log N(x_t; means[k], covs[k])`` per row, step and state, shape (n, T, K)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"{type(self).__name__}: X must have shape (n, {self.dim}); "
                             f"got {X.shape}")
        frames = X.reshape(-1, self.n_features)
        log_k = math.log(self.n_states)
        return (self._emissions.component_log_prob(frames) + log_k).reshape(
            X.shape[0], self.n_steps, self.n_states)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        return hmm_forward(self.startprob, self.transmat, self.frame_log_prob(X))[1]

    def sample_with_states(self, n: int, rng: np.random.Generator
                           ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` sequences (n, dim) and their state paths (n, T), vectorized over sequences."""
        n, T, K = int(n), self.n_steps, self.n_states
        states = np.empty((n, T), dtype=np.int64)
        start_cdf, trans_cdf = np.cumsum(self.startprob), np.cumsum(self.transmat, axis=1)
        # inverse-CDF draws; the clip guards against a last cumulative sum just below 1
        states[:, 0] = np.minimum(np.searchsorted(start_cdf, rng.random(n), side="right"),
                                  K - 1)
        for t in range(1, T):
            u = rng.random(n)
            states[:, t] = np.minimum((u[:, None] >= trans_cdf[states[:, t - 1]]).sum(axis=1),
                                      K - 1)
        z = rng.standard_normal((n, T, self.n_features))
        x = self.means[states] + np.einsum("ntij,ntj->nti", self._chol[states], z)
        return x.reshape(n, self.dim), states

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.sample_with_states(n, rng)[0]


#: The true parameters of ``hmm_seq``: 3 sticky states, 2-D emissions whose means lie 2.5
#: to 3 apart with unit-scale covariances (well separated, but overlapping: a single frame
#: does not tell its state).
HMM_SEQ_STARTPROB = (0.6, 0.3, 0.1)
HMM_SEQ_TRANSMAT = ((0.90, 0.07, 0.03),
                    (0.05, 0.85, 0.10),
                    (0.10, 0.10, 0.80))
HMM_SEQ_MEANS = ((-1.5, 0.0), (1.5, 0.0), (0.0, 2.0))
HMM_SEQ_COVS = (((1.0, 0.4), (0.4, 0.6)),
                ((0.6, -0.3), (-0.3, 1.0)),
                ((0.5, 0.0), (0.0, 0.5)))


def hmm_seq(seed: int = 0, *, n_train: int = 5000, n_val: int = 1000, n_test: int = 5000,
            n_steps: int = 16) -> Dataset:
    """Sequences from a fixed 3-state Gaussian HMM, 16 steps of 2-D (exact density).

    Each row is one sequence of ``n_steps`` 2-D observations (``sequence_shape =
    (n_steps, 2)``); the parameters are fixed (``HMM_SEQ_*`` in this module): start
    probabilities (0.6, 0.3, 0.1), sticky transitions (stay with probability 0.8 to 0.9),
    emission means (-1.5, 0), (1.5, 0), (0, 2) with overlapping full covariances. The
    exact log-density is the forward algorithm's (:func:`hmm_forward`).

    References:
        L. R. Rabiner (1989), A tutorial on hidden Markov models and selected applications
        in speech recognition, Proceedings of the IEEE 77(2), 257-286.
    """
    name = "hmm_seq"
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 1:
        raise ValueError(f"dataset {name}: n_steps must be an int >= 1; got {n_steps!r}")
    truth = GaussianHMMTruth(HMM_SEQ_STARTPROB, HMM_SEQ_TRANSMAT, HMM_SEQ_MEANS, HMM_SEQ_COVS,
                             n_steps=int(n_steps))
    params = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "n_steps": int(n_steps)}
    return make_synthetic(name, truth, seed, n_train, n_val, n_test, params,
                          sequence_shape=truth.sequence_shape)
