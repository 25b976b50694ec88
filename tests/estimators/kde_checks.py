"""Shared by the KDE tests of the tree path (test_kde.py) and the lattice path
(test_kde_grid.py): clustered test data, and the check that a fast path's every score is
within its certified bound of the exact path."""

from __future__ import annotations

import numpy as np

import densbench as db


def clustered(n: int, d: int, seed: int, *, near: int = 800,
              far: float = 9.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows in clusters of different widths, and ``near`` queries among them plus
    five ``far`` out (kernel sums from e^-100s to thousands)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.choice([0.3, 1.0, 2.0], size=(n, 1))
    Z = np.vstack([rng.normal(size=(near, d)) * 1.5, rng.normal(size=(5, d)) + far])
    return X, Z


def within_bound_of_exact(X: np.ndarray, Z: np.ndarray, h: float, algorithm: str,
                          tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit the KDE on ``X`` with ``algorithm`` and exactly; assert that every score of
    ``Z`` is within the bound it reports (plus the exact path's own rounding bound), and
    that each bound is positive and within ``tolerance``. Returns the path's scores, the
    exact ones and the fraction of kernel terms summed per row."""
    exact = db.estimators.make("kde", bandwidth=h, algorithm="exact").fit(X)
    fast = db.estimators.make("kde", bandwidth=h, algorithm=algorithm,
                              tolerance=tolerance).fit(X)
    assert (exact.algorithm_, fast.algorithm_) == ("exact", algorithm)
    got, ref = fast.score_samples(Z), exact.score_samples(Z)
    diag = fast.diagnostics(Z)
    bound = diag["kde_error_bound"][0]
    assert np.all(np.abs(got - ref) <= bound + exact.diagnostics(Z)["kde_error_bound"][0])
    assert np.all(bound <= tolerance) and np.all(bound > 0.0)
    return got, ref, diag["kde_terms_summed"][0]
