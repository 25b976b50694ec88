"""Hidden Markov models with Gaussian emissions, fitted by hmmlearn's EM.

The engine is hmmlearn's ``GaussianHMM``: its M-step (with its priors), its convergence
monitor, its covariance initialization and its emission densities. Its E-step walks the
sequences one at a time in Python, a fixed cost per sequence and iteration that dominates
for thousands of short sequences; densbench's subclass runs the same E-step over all sequences
at once (they have equal lengths): one emission-density call, the forward-backward
recursions vectorized over sequences (:func:`densbench.data.sequences.hmm_forward`,
:func:`hmm_backward`) and hmmlearn's own accumulation of the emission statistics over all
frames. The tests check that both E-steps give the same statistics. The hmmlearn hooks
used here (``_do_estep``, ``_compute_log_likelihood``, ``_accumulate_sufficient_statistics``,
``_get_n_fit_scalars_per_param``) are private ones of hmmlearn 0.3.

Scoring is the same forward algorithm on hmmlearn's emission densities (checked against
hmmlearn's ``score`` and brute-force enumeration); sampling is densbench's
(:class:`densbench.data.sequences.GaussianHMMTruth` with the fitted parameters), vectorized
over sequences and seeded by a NumPy Generator.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
from hmmlearn.base import BaseHMM
from hmmlearn.hmm import COVARIANCE_TYPES, GaussianHMM

from densbench.data.sequences import GaussianHMMTruth, hmm_forward, log_matmul
from densbench.estimators.base import DensityEstimator, engine_errors
from densbench.estimators.params import (
    Interval,
    ListOf,
    Options,
    ParamConstraints,
    is_int,
)
from densbench.estimators.selection import SIZES, select_size, start_seeds

__all__ = ["HMM", "hmm_backward"]

_COVARIANCE_TYPES = tuple(sorted(COVARIANCE_TYPES))


def hmm_backward(transmat: np.ndarray, log_frameprob: np.ndarray) -> np.ndarray:
    """The backward recursion in log space over ``n`` sequences at once, shape (n, T, K):
    ``log_beta[i, t, k] = log p(x_i,t+1..x_iT | z_it = k)`` (zero at the last step).

    References:
        L. R. Rabiner (1989), Proceedings of the IEEE 77(2), 257-286, eqs. 24-25.

    Example:
        >>> lf = np.log(np.array([[[0.5, 0.1], [0.2, 0.4]]]))
        >>> np.exp(hmm_backward(np.array([[0.7, 0.3], [0.2, 0.8]]), lf))[0, 0]
        array([0.26, 0.36])
    """
    log_beta = np.zeros_like(log_frameprob, dtype=np.float64)
    for t in range(log_frameprob.shape[1] - 2, -1, -1):
        log_beta[:, t] = log_matmul(log_frameprob[:, t + 1] + log_beta[:, t + 1], transmat.T)
    return log_beta


def _one_thread() -> Any:
    """BLAS and OpenMP limited to one thread: the matrix products here are K x K with K
    states (tens at most), where threads cost more in synchronization than they give,
    most of all on a shared machine."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


@contextlib.contextmanager
def _hmmlearn_log(records: list[str]) -> Iterator[None]:
    """Collect hmmlearn's log messages ("Model is not converging", degenerate solutions)
    into ``records`` instead of letting logging print them to stderr."""

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("hmmlearn")
    handler, propagate = _Collect(level=logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _BatchedGaussianHMM(GaussianHMM):
    """hmmlearn's GaussianHMM with the E-step vectorized over equal-length sequences."""

    def _do_estep(self, X: np.ndarray, lengths: Any) -> tuple[dict[str, Any], float]:
        n, T, K = len(lengths), int(lengths[0]), self.n_components
        log_frame = self._compute_log_likelihood(X).reshape(n, T, K)
        log_alpha, loglik = hmm_forward(self.startprob_, self.transmat_, log_frame)
        log_beta = hmm_backward(self.transmat_, log_frame)
        posteriors = np.exp(log_alpha + log_beta - loglik[:, None, None])
        stats = self._initialize_sufficient_statistics()
        # hmmlearn's accumulation of the emission statistics (sums over frames) over all
        # frames at once; given a one-row lattice it skips its transition counts, which
        # would see one long sequence, and its start counts are replaced below
        self._accumulate_sufficient_statistics(
            stats, X, log_frame[0, :1], posteriors.reshape(n * T, K), None, None)
        # expected transition counts, sum over sequences i and steps t of
        # xi_it(j, k) = alpha_it(j) A(j, k) p(x_i,t+1 | k) beta_i,t+1(k) / p(x_i): each
        # factor is shifted by its row maximum and the sequence's xi renormalized to sum 1
        # (it does exactly), so one matrix product per step sums over the sequences
        A = self.transmat_
        trans = np.zeros((K, K))
        after = log_frame + log_beta  # log p(x_t, x_t+1 .. x_T | z_t)
        for t in range(T - 1):
            u = np.exp(log_alpha[:, t] - log_alpha[:, t].max(axis=1, keepdims=True))
            v = np.exp(after[:, t + 1] - after[:, t + 1].max(axis=1, keepdims=True))
            total = np.einsum("nk,nk->n", u @ A, v)
            trans += A * ((u / total[:, None]).T @ v)
        stats.update(nobs=n, start=posteriors[:, 0].sum(axis=0), trans=trans)
        return stats, float(loglik.sum())

    def _accumulate_sufficient_statistics(self, stats: dict[str, Any], X: np.ndarray,
                                          lattice: np.ndarray, posteriors: np.ndarray,
                                          fwdlattice: Any, bwdlattice: Any) -> None:
        """hmmlearn's accumulation of the emission statistics, but its sum over frames of
        the posterior-weighted outer products (full and tied covariances) is one matrix
        product: hmmlearn's three-operand ``einsum`` runs as nested loops, most of an
        E-step on many short sequences. The same sums, up to floating-point order."""
        BaseHMM._accumulate_sufficient_statistics(self, stats, X, lattice, posteriors,
                                                  fwdlattice, bwdlattice)
        if self._needs_sufficient_statistics_for_mean():
            stats["post"] += posteriors.sum(axis=0)
            stats["obs"] += posteriors.T @ X
        if not self._needs_sufficient_statistics_for_covars():
            return
        if self.covariance_type in ("spherical", "diag"):
            stats["obs**2"] += posteriors.T @ X**2
            return
        K, d = posteriors.shape[1], X.shape[1]
        stats["obs*obs.T"] += (posteriors.T @ self._outer_products(X)).reshape(K, d, d)

    def _outer_products(self, X: np.ndarray) -> np.ndarray:
        """Each frame's outer product x x^T as a row of d * d; EM's iterations see the same
        frames, so they are computed once per fit."""
        cached = getattr(self, "_outer", None)
        if cached is None or cached[0] is not X:
            cached = self._outer = (X, (X[:, :, None] * X[:, None, :]).reshape(len(X), -1))
        return cached[1]


def _from_model(attr: str, doc: str) -> property:
    """A read-only float64 view of the fitted hmmlearn model's ``attr``."""
    return property(lambda self: np.asarray(getattr(self.model_, attr), dtype=np.float64),
                    doc=doc)


class HMM(DensityEstimator):
    """Hidden Markov model with Gaussian emissions (hmmlearn's EM), states selected.

    Each row is read as a sequence: with ``sequence_shape = (T, D)`` a row of ``T * D``
    numbers is ``T`` steps of ``D``-dimensional observations in row-major order (step t is
    ``row[t * D:(t + 1) * D]``); with ``None`` a row of ``d`` numbers is a sequence of ``d``
    one-dimensional observations (legal on any data, meaningful when the columns are an
    ordered series). The runner fills ``sequence_shape`` from the dataset's metadata.

    ``n_states`` is an int or a list of ints. For a list, candidates are fitted in increasing
    order and scored by the mean validation log-likelihood when ``X_val`` is given, else by
    BIC on the training data; the search stops after ``selection_patience`` consecutive
    candidates without improvement. Each candidate is fitted ``n_init`` times (seeds
    ``random_state``, ``random_state + 1``, ...) and the run with the highest mean
    validation log-likelihood is kept when ``X_val`` is given, else the one with the highest
    training log-likelihood (as for :class:`~densbench.estimators.gmm.GMM`, where a start
    chosen on training data overfitted). A run starts from uniform start and transition
    probabilities and k-means centres as emission means (Rabiner 1989, section V.C: uniform
    estimates of the Markov chain suffice, the emissions need good ones; a random Dirichlet
    start, hmmlearn's default, can leave EM in a poor local optimum: on ``hmm_seq`` with 3
    states stock hmmlearn's default fit ends several nats lower on some seeds), then EM
    (Baum-Welch) stops after ``n_iter`` iterations or when the training log-likelihood
    gains less than ``tol`` nats per sequence. Cost: ``n_init`` runs per candidate. hmmlearn's log
    messages are kept in ``fit_messages_``, never printed.

    ``score_samples`` is the exact log-likelihood of each sequence by the forward algorithm;
    ``sample`` draws whole sequences (start state, transitions, emissions) and flattens them.

    Parameters:
        n_states: an int >= 1 or a list of ints >= 1 (default: 1, 2, 3, 4, 6, 8, 12, 16).
        covariance_type: ``'full'``, ``'diag'``, ``'spherical'`` or ``'tied'``.
        n_iter: most EM iterations per fit.
        tol: EM stops when the training log-likelihood gains less than this per sequence.
        n_init: EM runs per candidate (the best on validation data, else on the training
            data, is kept).
        selection_patience: candidates without improvement before the search stops.
        sequence_shape: ``(T, D)`` with ``T * D`` columns, or None (``(d, 1)``).
        random_state: seed of the k-means initialization.

    Attributes:
        model_ (the fitted hmmlearn ``GaussianHMM``), startprob_ (K,), transmat_ (K, K),
        means_ (K, D), covars_ (K, D, D, full matrices whatever the type), n_states_,
        sequence_shape_ ((T, D)), selection_ (list of (K, score) in the order tried),
        selection_criterion_ (``'val_loglik'``, ``'bic'`` or ``'none'``), converged_,
        n_iter_ (EM iterations of the kept run), fit_messages_ (hmmlearn's log messages),
        init_scores_ (the kept size's runs: mean log-likelihood per sequence of each on the
        data that chose among them), init_criterion_ (``'val_loglik'`` or
        ``'train_loglik'``).

    References:
        L. R. Rabiner, "A tutorial on hidden Markov models and selected applications in
        speech recognition", Proceedings of the IEEE 77(2), 257-286, 1989; hmmlearn,
        https://hmmlearn.readthedocs.io (``hmmlearn.hmm.GaussianHMM``).

    Example:
        >>> import numpy as np, densbench as db
        >>> ds = db.data.load("hmm_seq", seed=0, n_train=500, n_val=200, n_test=200)
        >>> est = db.estimators.make("hmm", n_states=[2, 3, 4], sequence_shape=(16, 2))
        >>> est = est.fit(ds.train, ds.val)
        >>> est.n_states_, est.selection_criterion_
        (3, 'val_loglik')
        >>> est.sample(5, random_state=0).shape
        (5, 32)
    """

    _parameter_constraints: ClassVar[ParamConstraints] = {
        "n_states": SIZES,
        "covariance_type": [Options(*_COVARIANCE_TYPES)],
        "tol": [Interval(float, 0, None, "neither")],
        "n_iter": [Interval(int, 1, None)],
        "n_init": [Interval(int, 1, None)],
        "selection_patience": [Interval(int, 1, None)],
        "sequence_shape": [None, ListOf(Interval(int, 1, None), 2, 2,
                                        phrase="(T, D) with ints >= 1")],
    }

    def __init__(self, *, n_states: int | Sequence[int] = (1, 2, 3, 4, 6, 8, 12, 16),
                 covariance_type: str = "full", n_iter: int = 100, tol: float = 1e-3,
                 n_init: int = 3, selection_patience: int = 2,
                 sequence_shape: Sequence[int] | None = None, random_state: int = 0) -> None:
        self.n_states = n_states
        self.covariance_type = covariance_type
        self.n_iter = n_iter
        self.tol = tol
        self.n_init = n_init
        self.selection_patience = selection_patience
        self.sequence_shape = sequence_shape
        self.random_state = random_state

    @classmethod
    def run_params(cls, dataset: Any, *, seed: int, device: str) -> dict[str, Any]:
        """Also the (T, D) of sequence data, so that each row is read as a sequence."""
        out = super().run_params(dataset, seed=seed, device=device)
        if dataset.sequence_shape is not None:
            out["sequence_shape"] = list(dataset.sequence_shape)
        return out

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"n_states": 2, "n_iter": 20, "n_init": 1}

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        with _one_thread():
            self._fit_sequences(X, X_val)

    def _fit_sequences(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        d = X.shape[1]
        T, D = (d, 1) if self.sequence_shape is None else map(int, self.sequence_shape)
        if T * D != d:
            raise ValueError(f"{self.name}: sequence_shape ({T}, {D}) needs {T * D} columns; "
                             f"got {d}")
        self.sequence_shape_ = (T, D)
        self.fit_messages_: list[str] = []
        n = X.shape[0]
        frames, lengths = X.reshape(n * T, D), np.full(n, T)
        fits = [int(k) for k in np.atleast_1d(self.n_states) if k <= n * T]
        if len(fits) < np.size(self.n_states) and (is_int(self.n_states) or not fits):
            raise ValueError(f"{self.name}: n_states {self.n_states} exceeds the number of "
                             f"training observations ({n} sequences x {T} steps)")
        if is_int(self.n_states):
            self._adopt(self._em(frames, lengths, int(self.n_states), X_val))
            self.selection_: list[tuple[int, float]] = []
            self.selection_criterion_ = "none"
            return

        def fit(k: int) -> Any:
            state = self._em(frames, lengths, k, X_val)
            self._adopt(state)
            return state

        # candidates with more states than observations are not tried
        chosen = select_size(self, fits, fit, X, X_val, int(self.selection_patience))
        self.selection_, self.selection_criterion_ = chosen.tried, chosen.criterion
        self._adopt(chosen.state)

    def _em(self, frames: np.ndarray, lengths: np.ndarray, k: int,
            X_val: np.ndarray | None) -> tuple[Any, str, list[float]]:
        """The best of ``n_init`` EM runs with ``k`` states: (model, criterion, the runs'
        scores). The score is the mean validation log-likelihood with ``X_val``, else the
        training log-likelihood per sequence.

        Run ``i`` starts from uniform start and transition probabilities, the centres of
        one k-means run (seed ``random_state + i``) on all frames as means, and hmmlearn's
        covariance initialization (the frames' covariance for every state).
        """
        from sklearn.cluster import KMeans

        criterion = "train_loglik" if X_val is None else "val_loglik"
        best: tuple[float, Any] | None = None
        scores: list[float] = []
        for seed in start_seeds(self, int(self.n_init)):
            model = _BatchedGaussianHMM(n_components=k, covariance_type=self.covariance_type,
                                        n_iter=int(self.n_iter),
                                        tol=float(self.tol) * len(lengths), random_state=seed,
                                        init_params="c", implementation="log")
            model.startprob_ = np.full(k, 1.0 / k)
            model.transmat_ = np.full((k, k), 1.0 / k)
            model.means_ = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(
                frames).cluster_centers_
            with _hmmlearn_log(self.fit_messages_), engine_errors(self.name, "hmmlearn"):
                model.fit(frames, lengths)
            model.__dict__.pop("_outer", None)  # the frames' outer products: fit only
            if X_val is None:
                score = float(model.monitor_.history[-1]) / len(lengths)
            else:
                self._adopt((model, criterion, []))
                score = float(np.mean(self._score_samples(X_val)))
            scores.append(score)
            if best is None or score > best[0]:
                best = (score, model)
        assert best is not None  # n_init >= 1
        return best[1], criterion, scores

    def _adopt(self, state: tuple[Any, str, list[float]]) -> None:
        model, self.init_criterion_, self.init_scores_ = state
        self.model_ = model
        self.n_states_ = int(model.n_components)
        monitor = model.monitor_
        self.n_iter_ = int(monitor.iter)
        history = list(monitor.history)
        self.converged_ = bool(len(history) >= 2 and history[-1] - history[-2] < monitor.tol)

    # the fitted parameters, read from the hmmlearn model (one source of truth)
    startprob_ = _from_model("startprob_", "start probabilities (K,)")
    transmat_ = _from_model("transmat_", "transition probabilities (K, K), row: from")
    means_ = _from_model("means_", "emission means (K, D)")
    covars_ = _from_model("covars_", "emission covariances (K, D, D), full matrices")

    # -- scoring and sampling -----------------------------------------------------------
    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        T, D = self.sequence_shape_
        n = X.shape[0]
        with _one_thread():
            log_frame = self.model_._compute_log_likelihood(X.reshape(n * T, D))
            return hmm_forward(self.startprob_, self.transmat_,
                               log_frame.reshape(n, T, self.n_states_))[1]

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        covs = self.covars_
        process = GaussianHMMTruth(self.startprob_, self.transmat_, self.means_,
                                   0.5 * (covs + np.swapaxes(covs, 1, 2)),
                                   n_steps=self.sequence_shape_[0])
        return process.sample(n, rng)

    def _n_parameters(self) -> int:
        # hmmlearn's count (the one behind its bic()): start, transitions, means, covariances
        return int(sum(self.model_._get_n_fit_scalars_per_param().values()))
