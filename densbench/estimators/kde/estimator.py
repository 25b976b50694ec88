"""The Gaussian KDE estimator (registry name ``kde``): fits, chooses its bandwidth and its
scoring path, and delegates the sums to the engines: :mod:`~densbench.estimators.kde.exact`
(every term), :mod:`~densbench.estimators.kde.tree` (near terms summed, far ones bounded)
and :mod:`~densbench.estimators.kde.lattice` (1-D and 2-D interpolation); bandwidth rules
and the 'cv' scan are in :mod:`~densbench.estimators.kde.bandwidth`. The engines never
import this module.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.spatial import cKDTree

from densbench.estimators.base import DensityEstimator
from densbench.estimators.kde.bandwidth import RULES, rules_of_thumb, select_cv
from densbench.estimators.kde.exact import (
    DROP_NATS,
    EXPANSION_ERROR_MAX,
    augment_train,
    expansion_error_bound,
    log_kernel_sums,
    magnitude_rounding,
    usable_bandwidth,
)
from densbench.estimators.kde.lattice import GRID_MAX_DIM, grid_for
from densbench.estimators.kde.tree import (
    ORDER_AXES,
    BoundedSums,
    Leaves,
    bounded_log_kernel_sums,
)
from densbench.estimators.params import Options, ParamConstraints, Satisfies, is_real

__all__ = ["KDE", "TREE_MAX_DIM", "TREE_MIN_TRAIN"]

_ALGORITHMS = ("auto", "exact", "tree", "grid")
#: algorithm='auto' takes the lattice (1-D and 2-D, where it fits) or the tree path from
#: this many training points ...
TREE_MIN_TRAIN = 50_000
#: ... the tree in at most this many dimensions (beyond them the leaves' boxes are too
#: wide to prune)
TREE_MAX_DIM = 8


class KDE(DensityEstimator):
    """Gaussian kernel density estimate with isotropic bandwidth (exact, blocked, float64).

    Each training point carries a Gaussian kernel with covariance ``h^2 I``. The bandwidth
    h is a float, a rule of thumb, or chosen on validation data:

    - ``'scott'``: ``h = sigma * n^(-1/(d+4))``;
    - ``'silverman'``: ``h = sigma * (n (d+2) / 4)^(-1/(d+4))``;

      where n is the number of training rows and ``sigma = sqrt(mean_j var_j)``, the root of
      the mean per-dimension sample variance (ddof=1);
    - ``'cv'``: the h maximizing the mean log-likelihood of ``X_val`` over 25 log-spaced
      multiples (0.05x to 5x) of Scott's h plus Scott's and Silverman's h themselves, then
      11 log-spaced points between the best one's neighbours. Needs ``X_val``.

    Three ways to score, chosen by ``algorithm``: ``'exact'`` sums every kernel term
    (:func:`log_kernel_sums`, exact to rounding); ``'tree'`` sums the terms of the training
    points near each query (found with a k-d tree, or by boxes for dense blocks of queries)
    and bounds the others, so each log-density is within
    ``tolerance`` nats of the exact one, a bound computed per point
    (:mod:`densbench.estimators.kde.tree`); ``'grid'`` (1-D and 2-D data) interpolates
    the kernel sum from a lattice a tenth of a bandwidth fine, with a certified bound per
    point too (:mod:`densbench.estimators.kde.lattice`; rows it cannot certify within
    ``tolerance``, far from the data, go to the tree path, and where the lattice would
    be too large, data spread over thousands of bandwidths, every row does:
    ``algorithm_`` then says ``'tree'``). ``'auto'`` (the default) takes the lattice
    from :data:`TREE_MIN_TRAIN` (50,000) training points in 1-D and 2-D, the tree from
    that many in at most :data:`TREE_MAX_DIM` (8) dimensions (where the exact sum's
    ``n_query x n_train`` terms take minutes to hours), and the exact path below.
    ``algorithm_`` says which path the fit chose;
    ``diagnostics`` gives per test point the certified error bound (``kde_error_bound``,
    nats: its mean bounds the error of the mean test log-likelihood; on the exact path the
    expansion's rounding bound) and the fraction of kernel terms summed one by one
    (``kde_terms_summed``: 1 on the exact path, 0 for rows from the lattice).

    The exact path covers all query rows
    in its own blocked loop: memory is bounded by one block buffer of :data:`BLOCK_BYTES`
    (4 MiB; two during 'cv' selection) per PyTorch thread, plus the stored training data
    (``train_``, n x d, and n x (d + 2) float64 values for the distance product) and
    O(n_query) for the result, whatever the number of query or training rows
    (``tests/benchmarks/test_bench_memory.py`` scores a million training points in a
    child process with a memory limit). Samples are a uniformly chosen training point plus
    ``N(0, h^2 I)``.

    On the tree and lattice paths, ``'cv'`` scores the coarse grid on at most
    :data:`CV_ROWS_COARSE` (2,000) evenly strided validation rows and the fine grid (with
    the coarse best and its neighbours) on at most :data:`CV_ROWS_TREE` (20,000), and
    chooses among the latter (each within ``tolerance`` of its exact value; a lattice per
    bandwidth); ``cv_coarse_`` keeps the coarse scores. There the coarse grid is scanned
    from its narrowest bandwidth up and stops once :data:`CV_STOP_AFTER` bandwidths in a
    row score below the best so far by more than :data:`CV_STOP_Z` paired standard errors:
    the widest bandwidths cost the most (every training point is near every query) and,
    past a clear decline, oversmoothing only loses more (a validation curve with a second,
    wider peak behind such a decline would be missed).

    Parameters:
        bandwidth: a float > 0, or one of ``'scott'``, ``'silverman'``, ``'cv'``.
        algorithm: ``'auto'``, ``'exact'``, ``'tree'`` or ``'grid'`` (see above).
        tolerance: the tree and lattice paths' largest error per log-density, in nats
            (> 0).
        random_state: unused (the fit is deterministic); kept for a uniform interface.

    Attributes:
        bandwidth_: the bandwidth h used (float), in the units of ``X / data_scale_``
            (``data_scale_`` is 1 unless the data's magnitude is extreme).
        center_: (d,) training mean; train_: (n, d) the training data minus ``center_``.
        selection_: for 'cv', list of (h, mean validation log-likelihood), sorted by h
            (on the tree and lattice paths with more than :data:`CV_ROWS_COARSE`
            validation rows: the fine stage's; ``cv_coarse_`` the coarse stage's, else
            empty).
        algorithm_: ``'exact'``, ``'tree'`` or ``'grid'``, the path that scores.

    References:
        E. Parzen, "On estimation of a probability density function and mode", Annals of
        Mathematical Statistics 33(3), 1962; D. W. Scott, *Multivariate Density
        Estimation*, Wiley 1992 (Scott's rule); B. W. Silverman, *Density Estimation for
        Statistics and Data Analysis*, Chapman & Hall 1986 (Silverman's rule).

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).normal(size=(200, 2))
        >>> est = db.estimators.make("kde", bandwidth=0.5).fit(X)
        >>> direct = np.log(np.mean(np.exp(-(X ** 2).sum(1) / 0.5))) - np.log(2 * np.pi / 4)
        >>> bool(abs(est.score_samples(np.zeros((1, 2)))[0] - direct) < 1e-12)
        True
        >>> est.n_parameters()
        401
    """

    #: Query rows per distance block (None: as many as fit in :data:`BLOCK_BYTES`).
    block_rows: ClassVar[int | None] = None
    #: Training rows per distance block (None: ``min(BLOCK_TRAIN, n_train)``).
    block_train: ClassVar[int | None] = None
    # the blocked loop of log_kernel_sums bounds the memory: the base class's batches of
    # rows would only add calls (and fresh buffers) per 4096 rows
    score_batch_rows: ClassVar[int | None] = None

    _parameter_constraints: ClassVar[ParamConstraints] = {
        "bandwidth": [Satisfies(lambda b: is_real(b) and usable_bandwidth(b),
                                "> 0 (at most ~1e154, at least ~1e-154)"),
                      Options(*RULES)],
        "algorithm": [Options(*_ALGORITHMS)],
        "tolerance": [Satisfies(lambda t: is_real(t) and 0.0 < float(t) < math.inf,
                                "> 0 (nats)")],
    }

    def __init__(self, *, bandwidth: float | str = "scott", algorithm: str = "auto",
                 tolerance: float = 1e-6, random_state: int = 0) -> None:
        self.bandwidth = bandwidth
        self.algorithm = algorithm
        self.tolerance = tolerance
        self.random_state = random_state

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"bandwidth": "scott"}

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        n, d = X.shape
        if self.bandwidth == "cv" and X_val is None:
            raise ValueError(f"{self.name}: bandwidth='cv' needs X_val")
        self.center_ = X.mean(axis=0)
        self.train_ = X - self.center_
        if self.algorithm == "grid" and d > GRID_MAX_DIM:
            raise ValueError(f"{self.name}: algorithm='grid' works in at most {GRID_MAX_DIM} "
                             f"dimensions; the data have {d}: use 'tree' or 'auto'")
        path = self.algorithm if self.algorithm != "auto" else (
            "grid" if n >= TREE_MIN_TRAIN and d <= GRID_MAX_DIM else
            "tree" if n >= TREE_MIN_TRAIN and d <= TREE_MAX_DIM else "exact")
        self._bounded: tuple[bytes, Any] | None = None
        # the lattice of the chosen bandwidth and the tree's parts, built when first needed
        self._grids: dict[float, Any] = {}
        self._tree_parts: tuple[Any, Any, Any] | None = None
        self._train_aug: torch.Tensor | None = None
        if path == "exact":
            # [x, 1, ||x||^2] rows for the distance product, in locality order, built once
            self._train_aug = augment_train(self.train_)
        self.algorithm_ = path
        self.selection_: list[tuple[float, float]] = []
        self.cv_coarse_: list[tuple[float, float]] = []
        if not isinstance(self.bandwidth, str):
            # a given bandwidth is a length in the units of the data given to fit
            self.bandwidth_ = float(self.bandwidth) / self.data_scale_
            if not usable_bandwidth(self.bandwidth_):
                raise ValueError(f"{self.name}: bandwidth={self.bandwidth!r} is out of reach "
                                 f"for data of magnitude ~{self.data_scale_:.3g}: the kernel "
                                 f"would be 0 or flat everywhere; give a bandwidth nearer "
                                 f"the data's spread, or 'scott'")
            self._settle_path()
            return
        sigma = math.sqrt(float(np.mean(np.var(X, axis=0, ddof=1))))
        if not sigma > 0.0:
            raise ValueError(f"{self.name}: the training data have zero variance; give "
                             f"bandwidth as a float")
        scott, silverman = rules_of_thumb(sigma, n, d)
        if self.bandwidth == "scott":
            self.bandwidth_ = scott
        elif self.bandwidth == "silverman":
            self.bandwidth_ = silverman
        else:
            assert X_val is not None
            self.bandwidth_ = self._select(X_val, scott, silverman)
        self._settle_path()

    def _settle_path(self) -> None:
        """On the lattice path, build the chosen bandwidth's lattice; where it does not
        fit (data spread over too many bandwidths) every row goes to the tree path."""
        if self.algorithm_ == "grid":
            grid = self._grid(self.bandwidth_)
            if grid is None:
                self.algorithm_ = "tree"
        if self.algorithm_ == "tree":
            self._tree()  # built at fit, as a fit's cost

    def _grid(self, h: float, keep: bool = True) -> Any:
        """The lattice of bandwidth h (None where it would be too large), kept for the
        next call unless ``keep`` is false ('cv' builds one per bandwidth tried: keeping
        them all would hold dozens of lattices)."""
        if h in self._grids:
            return self._grids[h]
        grid = grid_for(self.train_, h)
        if keep:
            self._grids = {h: grid}
        return grid

    def _tree(self) -> tuple[Any, Any, Any]:
        """The tree path's augmented training rows, leaves and k-d tree, built once."""
        if self._tree_parts is None:
            aug = augment_train(self.train_, ORDER_AXES)
            self._tree_parts = (aug, Leaves(aug, len(self.train_)), cKDTree(self.train_))
        return self._tree_parts

    def _select(self, X_val: np.ndarray, scott: float, silverman: float) -> float:
        """'cv' (:func:`~densbench.estimators.kde.bandwidth.select_cv`): on the tree and
        lattice paths on subsampled validation rows."""
        chosen = select_cv(self._row_logliks, X_val, scott, silverman,
                           self.algorithm_ in ("tree", "grid"))
        self.selection_ = chosen.scores
        self.cv_coarse_ = chosen.coarse
        return chosen.bandwidth

    def _row_logliks(self, X: np.ndarray, hs: np.ndarray) -> np.ndarray:
        """Log-likelihood of each row of ``X`` (in the fit's units) at each bandwidth of
        ``hs``: (len(X), len(hs))."""
        n, d = self.train_.shape
        if self.algorithm_ in ("tree", "grid"):
            sums = np.column_stack([self._bounded_sums(X, float(h), keep=False).values
                                    for h in hs])
        else:
            sums = self._log_kernel_sums(X, list(hs))
        return sums - (math.log(n) + 0.5 * d * np.log(2.0 * math.pi * hs ** 2))

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        n, d = self.train_.shape
        h = self.bandwidth_
        if self.algorithm_ in ("tree", "grid"):
            bounded = self._bounded_sums(X, h)
            # kept for diagnostics on the same rows (the runner asks right after scoring)
            self._bounded = (self._fingerprint(X), bounded)
            sums = bounded.values
        else:
            sums = self._log_kernel_sums(X, [h])[:, 0]
        return sums - math.log(n) - 0.5 * d * math.log(2.0 * math.pi * h * h)

    def _log_kernel_sums(self, X: np.ndarray, hs: list[float]) -> np.ndarray:
        return log_kernel_sums(X - self.center_, self.train_, hs, train_aug=self._train_aug,
                               block_rows=self.block_rows, block_train=self.block_train)

    def _bounded_sums(self, X: np.ndarray, h: float, keep: bool = True) -> Any:
        """Log kernel sums within ``tolerance``, each with its certified bound: from the
        lattice where it reaches (``algorithm_ == 'grid'``), by the tree path elsewhere."""
        Z = X - self.center_
        tol = float(self.tolerance)
        grid = self._grid(h, keep) if self.algorithm_ == "grid" else None
        if grid is not None:
            values, bounds, ok = grid.log_sums(Z)
            # with the rounding the log adds; rows whose bound exceeds the tolerance: the tree
            bounds += magnitude_rounding(np.abs(values), Z.shape[1], len(self.train_), False)
            ok &= bounds <= tol
            summed = np.zeros(len(Z))  # no kernel term summed one by one
        else:
            values, bounds, summed = np.empty(len(Z)), np.empty(len(Z)), np.empty(len(Z))
            ok = np.zeros(len(Z), dtype=bool)
        if not ok.all():
            aug, leaves, kdtree = self._tree()
            rest = bounded_log_kernel_sums(Z[~ok], self.train_, h, tol, train_aug=aug,
                                           leaves=leaves, kdtree=kdtree)
            values[~ok], bounds[~ok], summed[~ok] = rest
        return BoundedSums(values, bounds, summed)

    @staticmethod
    def _fingerprint(X: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(X).tobytes(), digest_size=16,
                               person=str(X.shape).encode()[:16]).digest()

    def _diagnostics(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        """Per row: the certified bound on the error of its log-density (nats) and the
        fraction of kernel terms summed (see the class docstring)."""
        if self.algorithm_ in ("tree", "grid"):
            key = self._fingerprint(X)
            if self._bounded is None or self._bounded[0] != key:
                self._bounded = (key, self._bounded_sums(X, self.bandwidth_))
            bounded = self._bounded[1]
            size = np.abs(bounded.values)
            return {"kde_error_bound": (bounded.bounds + self._density_rounding(size), "nats"),
                    "kde_terms_summed": (bounded.summed, "fraction")}
        n, d = self.train_.shape
        Z = X - self.center_
        scale = -0.5 / self.bandwidth_ ** 2
        rounding = expansion_error_bound(Z, self.train_, [scale])
        # rows past EXPANSION_ERROR_MAX go to explicit differences: within 1e-8 and what
        # grows with the logits' size, |log sum| <= max(log n, |s| (||z|| + R)^2)
        direct = rounding > EXPANSION_ERROR_MAX
        reach = (np.linalg.norm(Z, axis=1)
                 + np.sqrt(np.max(np.einsum("ij,ij->i", self.train_, self.train_)))) ** 2
        size = np.maximum(math.log(n), -scale * reach)
        bound = (np.where(direct, 1e-8, rounding) + math.exp(-DROP_NATS)
                 + magnitude_rounding(size, d, n, direct))
        return {"kde_error_bound": (bound + self._density_rounding(size), "nats"),
                "kde_terms_summed": (np.ones(len(X)), "fraction")}

    def _density_rounding(self, size: np.ndarray) -> np.ndarray:
        """Rounding of the log density ``log sum - log n - d/2 log(2 pi h^2)`` beyond that
        of the log sum (``size``: its size): the two subtractions, each to eps."""
        n, d = self.train_.shape
        c = abs(math.log(n) + 0.5 * d * math.log(2.0 * math.pi * self.bandwidth_ ** 2))
        return 2.0 * float(np.finfo(np.float64).eps) * (size + 2.0 * c)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        idx = rng.integers(0, self.train_.shape[0], size=n)
        eps = rng.standard_normal((n, self.n_features_in_))
        return self.center_ + self.train_[idx] + self.bandwidth_ * eps

    def _n_parameters(self) -> int:
        return int(self.train_.size) + 1
