"""The KDE lattice path (densbench.estimators.kde.lattice): its interpolation constants and
error formula against dense sampling, every score within its certified bound of the
exact path (and the check failing when the bound is understated), the routing of rows it
cannot certify to the tree path, 'auto', 'cv' and thread counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import factorial

import densbench as db
from densbench.estimators.kde import estimator as kde_estimator
from densbench.estimators.kde import lattice as kde_grid
from densbench.estimators.kde.exact import log_kernel_sums

from .kde_checks import clustered, within_bound_of_exact


def _lagrange_direct(theta: float, nodes: np.ndarray) -> np.ndarray:
    """Lagrange weights from the definition, one product per node."""
    return np.array([np.prod([(theta - b) / (a - b) for b in nodes if b != a])
                     for a in nodes])


def test_lagrange_weights_match_the_definition_and_reproduce_polynomials():
    m = kde_grid.GRID_ORDER
    o = kde_grid._offsets(m)
    thetas = np.array([0.0, 1e-12, 0.25, 0.5, 0.999999])
    got = kde_grid._lagrange(thetas, m)
    for t, row in zip(thetas, got, strict=True):
        np.testing.assert_allclose(row, _lagrange_direct(t, o), rtol=1e-12, atol=1e-15)
    # degree m - 1 polynomials are interpolated exactly
    for p in range(m):
        np.testing.assert_allclose(got @ o ** p, thetas ** p, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("m", [6, 10])
def test_interpolation_constants_bound_their_sampled_maxima_tightly(m):
    p, lam = kde_grid.interpolation_constants(m)
    o = kde_grid._offsets(m)
    theta = np.random.default_rng(m).uniform(0.0, 1.0, 20_000)
    p_seen = np.max(np.abs(np.prod(theta[:, None] - o, axis=1)))
    lam_seen = np.max(np.sum(np.abs(kde_grid._lagrange(theta, m)), axis=1))
    assert p_seen <= p <= 1.001 * p_seen
    assert lam_seen <= lam <= 1.001 * lam_seen
    # the product peaks mid-cell: ((m-1)!! / 2^(m/2))^2
    double_fact = np.prod(np.arange(m - 1, 0, -2, dtype=np.float64))
    assert p == pytest.approx((double_fact / 2 ** (m // 2)) ** 2, rel=1e-3)


def test_one_interpolation_error_is_within_the_formula_and_not_far_below_it():
    # interpolating x -> exp(-(y - x)^2 / 2) from m nodes s apart (t = y - x in
    # bandwidths): |error| <= A s^m exp(-(|t| - r)_+^2 / 4), sampled densely; the worst
    # ratio is not vacuous (above 1e-2), so a wrong constant either way is seen
    m, s = kde_grid.GRID_ORDER, 0.3  # a coarse spacing: errors far above rounding
    p, _ = kde_grid.interpolation_constants(m)
    a = kde_grid._CRAMER * p / math.sqrt(factorial(m))
    rng = np.random.default_rng(0)
    theta = rng.uniform(0.0, 1.0, 4000)
    t = rng.uniform(-8.0, 8.0, 4000)
    nodes = (kde_grid._offsets(m)[None, :] - theta[:, None]) * s  # node - x
    approx = np.sum(kde_grid._lagrange(theta, m) * np.exp(-0.5 * (t[:, None] - nodes) ** 2),
                    axis=1)
    err = np.abs(approx - np.exp(-0.5 * t ** 2))
    reach = m / 2 * s
    bound = a * s ** m * np.exp(-np.maximum(np.abs(t) - reach, 0.0) ** 2 / 4.0)
    assert np.all(err <= bound)
    assert np.max(err / bound) > 1e-2


# at 1e-9 nats the lattice certifies no row (its constant alone is ~5e-10 of the
# envelope, a few times the sum): every row goes to the tree path, still within the bound
@pytest.mark.parametrize("d, h, tolerance, lattice", [
    (1, 0.05, 1e-6, True), (2, 0.15, 1e-6, True), (2, 0.5, 1e-9, False),
    (2, 1.5, 1e-6, True)])
def test_grid_path_is_within_its_bound_of_the_exact_path(d, h, tolerance, lattice):
    X, Z = clustered(6000, d, d)
    _, _, summed = within_bound_of_exact(X, Z, h, "grid", tolerance)
    # the rows near the data come from the lattice (no term summed); the far ones from
    # the tree path
    assert np.mean(summed[:800] == 0.0) > (0.95 if lattice else -1.0)
    assert np.all(summed[800:] > 0.0) and (lattice or np.all(summed > 0.0))


def test_an_understated_bound_is_caught(monkeypatch):
    # the check above can fail: at a coarse spacing with Cramer's constant understated
    # 1e6-fold the errors exceed the bounds claimed for them
    X, Z = clustered(3000, 2, 0)
    ref = log_kernel_sums(Z, X, [0.3])[:, 0]
    monkeypatch.setattr(kde_grid, "GRID_SPACING", 0.3)
    got, bound, ok = kde_grid.grid_for(X, 0.3).log_sums(Z)
    assert np.all(np.abs(got - ref)[ok] <= bound[ok])
    monkeypatch.setattr(kde_grid, "_CRAMER", 1e-6)
    got, bound, ok = kde_grid.grid_for(X, 0.3).log_sums(Z)
    assert np.any(np.abs(got - ref)[ok] > bound[ok])


def test_threads_and_chunks_change_nothing_beyond_rounding(monkeypatch):
    X, Z = clustered(5000, 2, 3)
    one = kde_grid.grid_for(X, 0.2, threads=1).log_sums(Z)
    monkeypatch.setattr(kde_grid, "_CHUNK", 300)
    monkeypatch.setattr(kde_grid, "_MIN_CHUNK", 100)
    two = kde_grid.grid_for(X, 0.2, threads=2).log_sums(Z)
    np.testing.assert_array_equal(one[2], two[2])
    np.testing.assert_allclose(one[0][one[2]], two[0][two[2]], rtol=0, atol=1e-12)


def test_the_lattice_refuses_what_it_cannot_hold():
    rng = np.random.default_rng(0)
    assert kde_grid.grid_for(rng.normal(size=(100, 3)), 1.0) is None  # 3-D
    wide = rng.normal(size=(100, 2)) * 1e3  # ~6,000 bandwidths across: too many nodes
    assert kde_grid.grid_for(wide, 1.0) is None
    assert kde_grid.grid_for(np.array([[0.0, np.inf]]), 1.0) is None


def test_auto_takes_the_lattice_where_it_fits_and_the_tree_elsewhere(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 2))
    assert db.estimators.make("kde").fit(X).algorithm_ == "exact"
    monkeypatch.setattr(kde_estimator, "TREE_MIN_TRAIN", 3000)
    assert db.estimators.make("kde").fit(X).algorithm_ == "grid"
    # a bandwidth so narrow that the lattice would exceed GRID_MAX_NODES: the tree
    narrow = db.estimators.make("kde", bandwidth=0.002, algorithm="grid").fit(X)
    assert narrow.algorithm_ == "tree"
    assert np.all(narrow.diagnostics(X[:20])["kde_error_bound"][0] <= 1e-6)
    assert db.estimators.make("kde").fit(rng.normal(size=(3000, 5))).algorithm_ == "tree"
    with pytest.raises(ValueError, match="^kde: algorithm='grid' works in at most 2 "
                                         "dimensions; the data have 5"):
        db.estimators.make("kde", algorithm="grid").fit(rng.normal(size=(50, 5)))


def test_cv_on_the_grid_path_selects_as_the_exact_path():
    rng = np.random.default_rng(0)
    X, X_val = rng.normal(size=(1000, 2)), rng.normal(size=(90, 2))
    exact = db.estimators.make("kde", bandwidth="cv", algorithm="exact").fit(X, X_val)
    grid = db.estimators.make("kde", bandwidth="cv", algorithm="grid").fit(X, X_val)
    assert grid.bandwidth_ == exact.bandwidth_ and grid.algorithm_ == "grid"
    np.testing.assert_allclose(np.array(grid.selection_), np.array(exact.selection_),
                               rtol=0, atol=1e-6)


def test_queries_far_out_or_not_finite_are_never_taken_from_the_lattice():
    # positions past int64 once wrapped to a node inside the lattice (a made-up value
    # with a small bound) or past its end (an IndexError): now out of reach, and the
    # estimator scores them on the tree path, as the exact path does
    X = np.random.default_rng(0).normal(size=(100, 2))
    grid = kde_grid.grid_for(X, 0.5)
    Z = np.array([[1e19, 0.0], [1e300, 1.0], [np.nan, 0.0], [-np.inf, 0.0], [0.1, 0.2]])
    values, bound, ok = grid.log_sums(Z)
    assert ok.tolist() == [False, False, False, False, True]
    assert np.all(np.isnan(values[:4]))
    est = db.estimators.make("kde", bandwidth=0.5, algorithm="grid").fit(X)
    exact = db.estimators.make("kde", bandwidth=0.5, algorithm="exact").fit(X)
    both = Z[[0, 4]]
    assert np.all(np.abs(est.score_samples(both) - exact.score_samples(both))
                  <= est.diagnostics(both)["kde_error_bound"][0]
                  + exact.diagnostics(both)["kde_error_bound"][0])
    # data at a tiny scale: an ordinary query is ~1e18 bandwidths away
    small = np.random.default_rng(1).normal(size=(200, 2)) * 1e-6
    est = db.estimators.make("kde", algorithm="grid").fit(small)
    exact = db.estimators.make("kde", algorithm="exact").fit(small)
    q = np.array([[1e12, 0.0]])
    assert est.score_samples(q)[0] == pytest.approx(exact.score_samples(q)[0], rel=1e-12)


def test_data_the_lattice_cannot_place_go_elsewhere():
    # at 2^53 the padding rounds away and the edge point's interpolation would fall off
    # the lattice (its weight dropped, the sum off by log 2): no lattice is built
    b = 2.0 ** 53
    assert kde_grid.grid_for(np.array([[b - 2.0], [b]]), 0.15) is None


def test_a_long_axis_is_convolved_directly():
    # 1-D data 900 bandwidths across: 9,000+ nodes, past the banded product's limit
    rng = np.random.default_rng(2)
    X = rng.normal(size=20_000)[:, None]
    grid = kde_grid.grid_for(X, 0.01)
    assert grid is not None and grid.shape[0] > kde_grid._DENSE_AXIS
    Z = rng.normal(size=300)[:, None]
    got, bound, ok = grid.log_sums(Z)
    ref = log_kernel_sums(Z, X, [0.01])[:, 0]
    assert ok.mean() > 0.95 and np.all(np.abs(got - ref)[ok] <= bound[ok] + 1e-12)
