"""KDE against SciPy's gaussian_kde and a direct float64 computation; blocking, rules of
thumb, 'cv' selection, sampling and parameter errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp
from sklearn.datasets import load_digits
from sklearn.neighbors import KernelDensity

import densbench as db
from densbench.estimators.kde import bandwidth as kde_bandwidth
from densbench.estimators.kde import estimator as kde_estimator
from densbench.estimators.kde import exact as kde_exact
from densbench.estimators.kde import tree as kde_tree
from densbench.estimators.kde.exact import (
    BLOCK_BYTES,
    CHUNK,
    PILOT_POINTS,
    augment_train,
    locality_order,
    log_kernel_sums,
)

from .kde_checks import clustered, within_bound_of_exact
from .test_gaussian import assert_moments

TOL = 1e-8


def whitened(n: int, d: int, seed: int) -> np.ndarray:
    """Correlated data transformed so that ``np.cov`` (ddof=1, what gaussian_kde uses) is
    the identity: gaussian_kde's kernel covariance ``bw^2 * cov`` is then exactly h^2 I."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    Xc = X - X.mean(axis=0)
    L = np.linalg.cholesky(np.cov(Xc.T))
    return np.linalg.solve(L, Xc.T).T


def direct_kde(Z: np.ndarray, X: np.ndarray, h: float) -> np.ndarray:
    """The definition, written out: explicit differences (no ||x||^2 expansion)."""
    n, d = X.shape
    sq = np.array([np.sum((z - X) ** 2, axis=1) for z in Z])
    return (logsumexp(-sq / (2 * h * h), axis=1) - math.log(n)
            - 0.5 * d * math.log(2 * math.pi * h * h))


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data.astype(np.float64)          # values 0..16, 64-D
    perm = np.random.default_rng(0).permutation(len(X))
    return X[perm[:1437]], X[perm[1437:]]


@pytest.mark.parametrize("d, h", [(2, 0.3), (2, 0.8), (5, 0.5), (5, 1.2)])
def test_matches_scipy_gaussian_kde(d, h):
    Xw = whitened(400, d, seed=d)
    np.testing.assert_allclose(np.cov(Xw.T), np.eye(d), atol=1e-12)
    Z = np.random.default_rng(10 + d).normal(size=(150, d)) * 1.5
    ref = stats.gaussian_kde(Xw.T, bw_method=h).logpdf(Z.T)
    got = db.estimators.make("kde", bandwidth=h).fit(Xw).score_samples(Z)
    assert np.max(np.abs(got - ref)) <= TOL


def test_exact_on_digits_where_kernel_density_is_not(digits):
    X, Z = digits
    got = db.estimators.make("kde", bandwidth=1.0).fit(X).score_samples(Z)
    exact = direct_kde(Z, X, 1.0)
    assert np.max(np.abs(got - exact)) <= TOL
    # scikit-learn's KernelDensity is NOT the reference here: on these 64-D points with
    # h = 1 its tree-based estimate is far off (many test points by tens of nats, either
    # way). The assertion records that it deviates, which is why the direct computation
    # above is the reference.
    kd = KernelDensity(bandwidth=1.0).fit(X).score_samples(Z)
    assert np.max(np.abs(kd - exact)) > 1.0


def test_blocking_does_not_change_the_result(digits):
    X, Z = digits
    est = db.estimators.make("kde", bandwidth=1.0).fit(X)
    default = est.score_samples(Z)                     # one block: 360 x 1437
    # 8 x 5 blocks, the last ones partial on both axes (360 = 7*50 + 10, 1437 = 4*300 + 237)
    est.block_rows, est.block_train = 50, 300
    assert np.max(np.abs(est.score_samples(Z) - default)) <= 1e-10
    # really tiny blocks on a subset (few blocks only: each is a separate BLAS call)
    Zc, Xc = Z[:10] - est.center_, est.train_[:100]
    full = log_kernel_sums(Zc, Xc, [1.0])
    assert np.max(np.abs(log_kernel_sums(Zc, Xc, [1.0], block_rows=3, block_train=7)
                         - full)) <= 1e-10
    # several bandwidths in one pass equal one bandwidth at a time
    Zc = Z[:50] - est.center_
    many = log_kernel_sums(Zc, est.train_, [0.5, 1.0, 3.0], block_rows=16, block_train=200)
    for j, h in enumerate([0.5, 1.0, 3.0]):
        one = log_kernel_sums(Zc, est.train_, [h])[:, 0]
        assert np.max(np.abs(many[:, j] - one)) <= 1e-10


def test_2d_matches_the_direct_sum_across_many_blocks():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5000, 2)) * [2.0, 1.0]
    Z = rng.normal(size=(300, 2)) * 2.5
    est = db.estimators.make("kde", bandwidth=0.1).fit(X)
    est.block_train = 700  # 8 training blocks, the last one partial
    assert np.max(np.abs(est.score_samples(Z) - direct_kde(Z, X, 0.1))) <= TOL
    # the one block buffer of this thread stays within the budget
    assert kde_exact._LOCAL.buffers.block.numel() * 8 <= BLOCK_BYTES


def test_a_query_far_from_every_pilot_point_is_still_exact():
    # 1001 training points near 0 and one at (50, 0), at an index the pilot subset (every
    # 15th point) skips: against the nearest pilot point the query's own kernel term
    # would be e^125000 and overflow, so that row's shift must be raised on the way
    rng = np.random.default_rng(0)
    X = rng.normal(scale=0.1, size=(1002, 2))
    X[7] = [50.0, 0.0]
    assert 7 % max(1, len(X) // PILOT_POINTS) != 0
    Z = np.array([[50.0, 0.05], [0.0, 0.0], [49.0, 0.0]])
    # in 4 training blocks (pilot shift, raised on the way) and in one (no pilot)
    for hs, block_train in [([0.1], 256), ([0.1, 0.3, 1.0], 256), ([0.1, 1.0], None)]:
        got = log_kernel_sums(Z - X.mean(0), X - X.mean(0), hs, block_train=block_train)
        for j, h in enumerate(hs):
            n, d = X.shape
            exact = direct_kde(Z, X, h) + math.log(n) + 0.5 * d * math.log(2 * math.pi * h * h)
            assert np.max(np.abs(got[:, j] - exact)) <= TOL


def test_locality_order_puts_near_points_together():
    X = np.random.default_rng(0).normal(size=(4000, 2))
    order = locality_order(X)
    assert sorted(order.tolist()) == list(range(len(X)))
    step = np.linalg.norm(np.diff(X[order], axis=0), axis=1)
    # a random order steps ~1.8 units on average; a Z-order curve a small fraction of it
    assert np.median(step) < 0.1 * np.median(np.linalg.norm(np.diff(X, axis=0), axis=1))
    assert np.array_equal(locality_order(X), order)  # deterministic
    aug = augment_train(X[:40])  # padded to a whole number of chunks, zero kernel terms
    assert aug.shape == (2 * CHUNK, 4) and bool(torch.isposinf(aug[40:, 3]).all())


@pytest.mark.parametrize("h", [1e151, 1e153])
def test_padding_rows_add_nothing_at_extreme_bandwidths(h):
    # 10 training points padded to 32 rows: at h = 1e151 a padding row at a finite
    # "distance" of 1e300 would weigh e^-0.005 and count as a point (log 32, not log 10)
    X = np.random.default_rng(0).normal(size=(10, 2))
    got = log_kernel_sums(X[:3], X, [h, 1.0])
    n, d = X.shape
    exact = direct_kde(X[:3], X, 1.0) + math.log(n) + 0.5 * d * math.log(2 * math.pi)
    assert np.max(np.abs(got[:, 1] - exact)) <= TOL
    # every term is 1: the sum is n, not the number of rows with padding
    assert np.allclose(got[:, 0], math.log(n), rtol=0, atol=1e-12)
    got1 = log_kernel_sums(X[:3], X, [h])
    assert np.array_equal(got1[:, 0], got[:, 0])


def test_the_rounding_bound_holds_and_routes_what_it_must(monkeypatch):
    # the expansion alone (the bound ignored) is within the bound of the direct sum, and
    # is far off where the bound is large; the default routes those rows to differences
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 3)) * 10.0 + 50.0
    Z = np.vstack([rng.normal(size=(20, 3)) * 10.0 + 50.0, [[5e4, 0.0, 0.0]]])
    c = X.mean(0)
    for h in [2.0, 0.05, 1e-4]:
        exact = direct_kde(Z, X, h) + math.log(len(X)) + 1.5 * math.log(2 * math.pi * h * h)
        bound = kde_exact.expansion_error_bound(Z - c, X - c, [-0.5 / h ** 2])
        got = log_kernel_sums(Z - c, X - c, [h])[:, 0]
        # exact to rounding, relative to the size of the value itself
        assert np.all(np.abs(got - exact) <= TOL + 2e-15 * np.abs(exact))
        with monkeypatch.context() as mp:
            mp.setattr(kde_exact, "EXPANSION_ERROR_MAX", math.inf)
            expanded = log_kernel_sums(Z - c, X - c, [h])[:, 0]
        assert np.all(np.abs(expanded - exact) <= bound + 2e-15 * np.abs(exact))
        if h == 1e-4:  # the bound is large and the expansion's error is real
            assert np.max(np.abs(expanded - exact)) > 1e-6
    assert bound.min() > kde_exact.EXPANSION_ERROR_MAX
    # at h = 1e-150 every row goes to differences: each point alone counts (log 1 = 0)
    assert np.array_equal(log_kernel_sums(X[:5] - c, X - c, [1e-150]), np.zeros((5, 1)))


def test_rows_by_differences_keep_to_the_thread_count(monkeypatch):
    seen = []
    direct = kde_exact._direct_sums

    def recording(*args):
        seen.append(torch.get_num_threads())
        return direct(*args)

    monkeypatch.setattr(kde_exact, "_direct_sums", recording)
    X = np.random.default_rng(0).normal(size=(50, 2))
    before = torch.get_num_threads()
    log_kernel_sums(X, X, [1e-100], threads=1)
    assert seen == [1] and torch.get_num_threads() == before


@pytest.mark.parametrize("sparse_max", [0.0, 1.0])
def test_skipping_chunks_changes_nothing(monkeypatch, digits, sparse_max):
    # sparse_max 0: every block summed densely (all terms); 1: only the kept chunks, even
    # where most are kept. Both agree with the default choice to rounding, on digits
    # (few chunks kept) and in 2-D (many kept), in one and in several training blocks.
    X, Z = digits
    rng = np.random.default_rng(1)
    X2, Z2 = rng.normal(size=(3000, 2)), rng.normal(size=(200, 2)) * 1.5
    cases = [(Z - X.mean(0), X - X.mean(0), [0.6, 1.0], None),
             (Z2, X2, [0.1], None), (Z2, X2, [0.05, 0.3], 512)]
    default = [log_kernel_sums(z, x, hs, block_train=bt) for z, x, hs, bt in cases]
    monkeypatch.setattr(kde_exact, "_SPARSE_MAX", sparse_max)
    for (z, x, hs, bt), ref in zip(cases, default, strict=True):
        got = log_kernel_sums(z, x, hs, block_train=bt)
        assert np.max(np.abs(got - ref)) <= 1e-12


def test_worker_threads_give_the_same_numbers(digits):
    X, Z = digits
    Xc, Zc = X - X.mean(0), Z - X.mean(0)
    one = log_kernel_sums(Zc, Xc, [0.7, 1.0], threads=1)
    two = log_kernel_sums(Zc, Xc, [0.7, 1.0], threads=2)
    assert np.max(np.abs(one - two)) <= 1e-10
    assert torch.get_num_threads() == 1  # the caller's setting is left as it was (conftest)
    est = db.estimators.make("kde", bandwidth=1.0).fit(X)
    assert np.max(np.abs(est.score_samples(Z) - direct_kde(Z, X, 1.0))) <= TOL


def test_rules_of_thumb():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)) * [1.0, 2.0, 3.0]
    n, d = X.shape
    sigma = math.sqrt(np.mean(np.var(X, axis=0, ddof=1)))
    scott = db.estimators.make("kde", bandwidth="scott").fit(X)
    silverman = db.estimators.make("kde", bandwidth="silverman").fit(X)
    assert scott.bandwidth_ == pytest.approx(sigma * n ** (-1 / (d + 4)), rel=1e-14)
    assert silverman.bandwidth_ == pytest.approx(
        sigma * (n * (d + 2) / 4) ** (-1 / (d + 4)), rel=1e-14)
    assert scott.n_parameters() == n * d + 1


def test_cv_beats_the_rules_of_thumb():
    rng = np.random.default_rng(0)
    # two tight, far-apart clusters: the rules of thumb oversmooth
    centers = np.array([[-4.0, 0.0], [4.0, 0.0]])

    def draw(n):
        return centers[rng.integers(0, 2, n)] + 0.3 * rng.normal(size=(n, 2))

    X, X_val = draw(400), draw(200)
    cv = db.estimators.make("kde", bandwidth="cv").fit(X, X_val)
    for rule in ("scott", "silverman"):
        other = db.estimators.make("kde", bandwidth=rule).fit(X)
        assert cv.score(X_val) >= other.score(X_val)
    assert cv.bandwidth_ in dict(cv.selection_)
    assert cv.score(X_val) == pytest.approx(max(s for _, s in cv.selection_), abs=1e-12)


def test_cv_needs_validation_data():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="^kde: bandwidth='cv' needs X_val"):
        db.estimators.make("kde", bandwidth="cv").fit(X)


def test_sample_moments():
    X = np.random.default_rng(0).normal(size=(300, 3)) * [1.0, 2.0, 0.5]
    est = db.estimators.make("kde", bandwidth=0.4).fit(X)
    cov = np.cov(X.T, bias=True) + 0.4 ** 2 * np.eye(3)   # mixture of kernels at the data
    assert_moments(est.sample(20_000, random_state=0), X.mean(axis=0), cov)


def test_bad_bandwidth_message():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError) as err:
        db.estimators.make("kde", bandwidth=-1).fit(X)
    assert str(err.value) == ("kde: bandwidth must be > 0 (at most ~1e154, at least ~1e-154) "
                              "or one of 'scott', 'silverman', 'cv'; got -1")
    # 1e160 and 1e-160: -1/(2 h^2) is 0 or -inf, so no logit could be formed
    for bad in (0, 0.0, float("nan"), float("inf"), 1e160, 1e-160, 1e-170, 5e-324, 10**400,
                "auto", True, None):
        with pytest.raises(ValueError, match="^kde: bandwidth must be"):
            db.estimators.make("kde", bandwidth=bad).fit(X)
    with pytest.raises(ValueError, match="^log_kernel_sums: bandwidth 1e[+]160 is not"):
        log_kernel_sums(X[:2], X, [1.0, 1e160])


def test_bandwidth_out_of_reach_of_the_data_is_named():
    """A float bandwidth is a length in the data's units, however large the data."""
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match=r"^kde: bandwidth=1e-150 is out of reach for data "
                                         r"of magnitude"):
        db.estimators.make("kde", bandwidth=1e-150).fit(X * 1e155)
    a = db.estimators.make("kde", bandwidth=0.3).fit(X)
    b = db.estimators.make("kde", bandwidth=0.3e150).fit(X * 1e150)
    assert b.data_scale_ > 1e150
    np.testing.assert_allclose(b.score_samples(X[:5] * 1e150) + 2 * np.log(1e150),
                               a.score_samples(X[:5]), rtol=0, atol=1e-9)


def test_the_fit_runs_its_svd_on_one_blas_thread(monkeypatch):
    # the locality order's SVD is the fit's one LAPACK call: on one thread whatever the
    # process allows (on a loaded machine each step would wait for a second thread)
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    svd = np.linalg.svd

    def recording(*args, **kwargs):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return svd(*args, **kwargs)

    monkeypatch.setattr(np.linalg, "svd", recording)
    X = np.random.default_rng(0).normal(size=(300, 8))
    with threadpool_limits(limits=2, user_api="blas"):
        db.estimators.make("kde", bandwidth="scott").fit(X)
    assert seen == [1]


# -- the tree path: within its certified bound of the exact path -------------------------

@pytest.mark.parametrize("ball_max", [kde_tree.BALL_MAX, 0])  # 0: blocks only
@pytest.mark.parametrize("d, h, tolerance", [(1, 0.05, 1e-6), (2, 0.1, 1e-6), (2, 0.4, 1e-3),
                                             (3, 0.2, 1e-6), (6, 0.5, 1e-6)])
def test_tree_path_is_within_its_bound_of_the_exact_path(monkeypatch, d, h, tolerance,
                                                         ball_max):
    monkeypatch.setattr(kde_tree, "BALL_MAX", ball_max)
    # the balls and blocks themselves, never handed to the exact path (test below)
    monkeypatch.setattr(kde_tree, "EXACT_SHARE", math.inf)
    X, Z = clustered(4000, d, d, near=600, far=8.0)
    got, ref, summed = within_bound_of_exact(X, Z, h, "tree", tolerance)
    assert np.all((summed > 0.0) & (summed <= 1.0))
    if h <= 0.1:  # a narrow kernel in few dimensions: most terms bounded, not summed
        assert np.mean(summed) < 0.5
    if tolerance == 1e-3:  # a loose tolerance is used: the bound is not vacuous
        assert np.max(np.abs(got - ref)) > 1e-7


@pytest.mark.parametrize("share", [kde_tree.EXACT_SHARE, math.inf])
def test_wide_bandwidths_go_to_the_exact_path_narrow_ones_to_the_tree(monkeypatch, share):
    # which stage runs is a matter of cost only: at a bandwidth wide against 6-D data every
    # ball is full and the blocks would keep most leaves, so the rows go to the exact path
    # (unless EXACT_SHARE forbids it); at a narrow one the k-d tree's balls take them
    monkeypatch.setattr(kde_tree, "EXACT_SHARE", share)
    calls = {"balls": 0, "blocks": 0}
    for name, key in (("_ball_sums", "balls"), ("row_block_sums", "blocks")):
        real = getattr(kde_tree, name)

        def spy(*args, _real=real, _key=key, **kwargs):
            calls[_key] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(kde_tree, name, spy)
    rng = np.random.default_rng(0)
    X, Z = rng.normal(size=(6000, 6)), rng.normal(size=(400, 6))
    for h, balls, blocks in ((1.0, 0, share == math.inf), (0.05, 1, None)):
        calls.update(balls=0, blocks=0)
        got, bound, summed = kde_tree.bounded_log_kernel_sums(Z, X, h, 1e-6)
        ref = log_kernel_sums(Z, X, [h])[:, 0]
        assert np.all(np.abs(got - ref) <= bound) and np.all(bound <= 1e-6)
        assert calls["balls"] == balls
        if blocks is not None:
            assert (calls["blocks"] > 0) == blocks
            assert np.all(summed == 1.0) or blocks
        else:
            assert np.mean(summed) < 0.01


def test_a_wrong_bound_is_caught(monkeypatch):
    # the check above can fail: with the box distances overstated, or a k-d tree that
    # leaves out each ball's first point (bounds that no longer hold), terms that matter
    # are left out, and the comparison with the exact path sees it
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    X, Z = rng.normal(size=(4000, 2)), rng.normal(size=(300, 2))
    ref = log_kernel_sums(Z, X, [0.1])[:, 0]

    class Dropping(cKDTree):
        def query_ball_point(self, x, r, **kwargs):
            got = super().query_ball_point(x, r, **kwargs)
            return got if kwargs.get("return_length") else [p[1:] for p in got]

    got, bound, _ = kde_tree.bounded_log_kernel_sums(Z, X, 0.1, 1e-6, kdtree=Dropping(X))
    assert np.any(np.abs(got - ref) > bound)
    distances = kde_tree._box_distances

    def overstated(lo, hi, leaves):
        near, mid = distances(lo, hi, leaves)
        return near + 0.5, mid

    monkeypatch.setattr(kde_tree, "_box_distances", overstated)
    monkeypatch.setattr(kde_tree, "BALL_MAX", 0)
    got, bound, _ = kde_tree.bounded_log_kernel_sums(Z, X, 0.1, 1e-6)
    assert np.any(np.abs(got - ref) > bound)


def _long_double_log_sums(Z: np.ndarray, X: np.ndarray, h: float) -> np.ndarray:
    """Reference log kernel sums in extended precision (an independent computation: the
    exact path shares float64's rounding with the tree path's rows by differences)."""
    Xl = X.astype(np.longdouble)
    out = []
    for z in Z.astype(np.longdouble):
        logits = -((z - Xl) ** 2).sum(1) / (2 * np.longdouble(h) ** 2)
        top = logits.max()
        out.append(float(top + np.log(np.exp(logits - top).sum())))
    return np.array(out)


@pytest.mark.parametrize("h", [0.1, 1e3])
def test_tree_path_rows_far_out_and_in_the_tails(h):
    # a query 1e5 bandwidths away (expansion bound too large: explicit differences, whose
    # logit -5e9 is itself only good to 1e-6), one between two far clusters, and a
    # bandwidth far above the data's spread keep their bounds against extended precision
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(2000, 2)) * 0.05, rng.normal(size=(2000, 2)) * 0.05 + 40])
    Z = np.array([[0.0, 0.0], [20.0, 20.0], [1e4, 0.0], [40.0, 40.0], [3e3, 1.0]])
    got, bound, _ = kde_tree.bounded_log_kernel_sums(Z, X, h, 1e-6)
    assert np.all(np.abs(got - _long_double_log_sums(Z, X, h)) <= bound)
    assert np.all(bound[[0, 1, 3]] <= 1e-6)


def test_the_exact_paths_error_bound_holds_far_out_and_at_a_wide_bandwidth():
    # the reported per-row bound on the log density's error, against extended precision
    # (the tree path's log sums: test_tree_path_rows_far_out_and_in_the_tails)
    X = np.random.default_rng(2).normal(size=(400, 2))
    Z = np.array([[0.0, 0.0], [1e4, 0.0], [3e3, 1.0]])
    for h in (0.1, 1e3):
        est = db.estimators.make("kde", bandwidth=h, algorithm="exact").fit(X)
        ref = (_long_double_log_sums(Z, X, h) - math.log(len(X))
               - math.log(2.0 * math.pi * h * h))
        bound = est.diagnostics(Z)["kde_error_bound"][0]
        assert np.all(np.abs(est.score_samples(Z) - ref) <= bound), (h, bound)


def test_auto_takes_the_tree_for_large_low_dimensional_sets(monkeypatch):
    X = np.random.default_rng(0).normal(size=(400, 3))
    assert db.estimators.make("kde").fit(X).algorithm_ == "exact"
    monkeypatch.setattr(kde_estimator, "TREE_MIN_TRAIN", 400)
    assert db.estimators.make("kde").fit(X).algorithm_ == "tree"
    monkeypatch.setattr(kde_estimator, "TREE_MAX_DIM", 2)
    assert db.estimators.make("kde").fit(X).algorithm_ == "exact"
    exact = db.estimators.make("kde", algorithm="exact").fit(X)
    assert set(exact.diagnostics(X[:5])) == {"kde_error_bound", "kde_terms_summed"}
    assert np.all(exact.diagnostics(X[:5])["kde_terms_summed"][0] == 1.0)


def test_cv_on_the_tree_path_selects_as_the_exact_path(monkeypatch):
    rng = np.random.default_rng(0)
    X, X_val = rng.normal(size=(1000, 2)), rng.normal(size=(90, 2))
    exact = db.estimators.make("kde", bandwidth="cv", algorithm="exact").fit(X, X_val)
    tree = db.estimators.make("kde", bandwidth="cv", algorithm="tree").fit(X, X_val)
    assert tree.bandwidth_ == exact.bandwidth_
    np.testing.assert_allclose(np.array(tree.selection_), np.array(exact.selection_),
                               rtol=0, atol=1e-6)
    # at most CV_ROWS_TREE validation rows per bandwidth
    monkeypatch.setattr(kde_bandwidth, "CV_ROWS_TREE", 30)
    sub = db.estimators.make("kde", bandwidth="cv", algorithm="tree").fit(X, X_val)
    picked = db.estimators.make("kde", bandwidth=sub.bandwidth_, algorithm="exact").fit(X)
    assert dict(sub.selection_)[sub.bandwidth_] == pytest.approx(
        picked.score(X_val[::3]), abs=1e-6)


@pytest.mark.parametrize("algorithm", ["tree", "grid"])
def test_cv_on_large_sets_locates_on_few_rows_and_chooses_on_many(monkeypatch, algorithm):
    # the coarse grid on CV_ROWS_COARSE rows only locates the fine grid; the choice is
    # made among bandwidths all scored on the same CV_ROWS_TREE rows
    monkeypatch.setattr(kde_bandwidth, "CV_ROWS_COARSE", 30)
    rng = np.random.default_rng(0)
    X, X_val = rng.normal(size=(1000, 2)), rng.normal(size=(90, 2))
    est = db.estimators.make("kde", bandwidth="cv", algorithm=algorithm).fit(X, X_val)
    # the grid's narrowest bandwidths, in order, up to where the scan stopped (of 25 grid
    # points, Scott's and Silverman's: the same h in 2-D)
    scott = np.sqrt(np.mean(np.var(X, axis=0, ddof=1))) * len(X) ** (-1 / 6)
    grid = np.unique(np.append(scott * kde_bandwidth._CV_GRID, scott))
    assert np.allclose([h for h, _ in est.cv_coarse_], grid[:len(est.cv_coarse_)])
    assert 3 <= len(est.cv_coarse_) <= 26 and 11 <= len(est.selection_) <= 14
    exact = db.estimators.make("kde", bandwidth="cv", algorithm="exact").fit(X, X_val)
    assert exact.cv_coarse_ == []
    h_coarse = {h for h, _ in est.cv_coarse_}
    for h, score in est.cv_coarse_[::9]:  # on every third validation row
        ref = db.estimators.make("kde", bandwidth=h, algorithm="exact").fit(X)
        assert score == pytest.approx(ref.score(X_val[::3]), abs=1e-6)
    for h, score in est.selection_[::4]:  # on all of them
        ref = db.estimators.make("kde", bandwidth=h, algorithm="exact").fit(X)
        assert score == pytest.approx(ref.score(X_val), abs=1e-6)
    assert est.bandwidth_ == max(est.selection_, key=lambda p: p[1])[0]
    assert est.bandwidth_ == pytest.approx(exact.bandwidth_, rel=0.2)
    assert h_coarse & {h for h, _ in est.selection_}  # the coarse best, scored again


def test_the_coarse_scan_stops_after_a_clear_decline_and_chooses_as_the_full_grid(monkeypatch):
    # on large sets the coarse grid is scanned from the narrowest bandwidth up and stops
    # after CV_STOP_AFTER bandwidths in a row each below the best by > CV_STOP_Z paired SE:
    # the widest, most expensive bandwidths are not scored, and the choice is the full
    # grid's
    monkeypatch.setattr(kde_bandwidth, "CV_ROWS_COARSE", 300)
    rng = np.random.default_rng(1)
    # tight clusters far apart: the best bandwidth lies far below Scott's rule (which sees
    # the spread of the whole set), as on large sets, so the grid's wide end is far off
    centres = rng.uniform(-3.0, 3.0, size=(20, 3))

    def draw(n):
        return centres[rng.integers(0, 20, n)] + 0.1 * rng.normal(size=(n, 3))

    X, X_val = draw(3000), draw(900)
    est = db.estimators.make("kde", bandwidth="cv", algorithm="tree").fit(X, X_val)
    assert len(est.cv_coarse_) < 20  # of 27
    rows = X_val[::3]

    def per_row(h):
        return db.estimators.make("kde", bandwidth=h, algorithm="exact").fit(X).score_samples(rows)

    hs = [h for h, _ in est.cv_coarse_]
    best = max(range(len(hs)), key=lambda j: est.cv_coarse_[j][1])
    for h in hs[-kde_bandwidth.CV_STOP_AFTER:]:
        diff = per_row(hs[best]) - per_row(h)
        assert diff.mean() > kde_bandwidth.CV_STOP_Z * diff.std(ddof=1) / np.sqrt(len(diff))
    monkeypatch.setattr(kde_bandwidth, "CV_STOP_AFTER", 100)  # no stop: the whole grid
    full = db.estimators.make("kde", bandwidth="cv", algorithm="tree").fit(X, X_val)
    assert len(full.cv_coarse_) == 27
    assert full.bandwidth_ == est.bandwidth_ and full.selection_ == est.selection_


def test_bad_tolerance_and_algorithm_messages():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="^kde: tolerance must be > 0 [(]nats[)]; got 0"):
        db.estimators.make("kde", tolerance=0).fit(X)
    with pytest.raises(ValueError, match="^kde: algorithm must be one of 'auto', 'exact', "
                                         "'tree', 'grid'; got 'fft'"):
        db.estimators.make("kde", algorithm="fft").fit(X)


def test_small_sums_run_on_one_thread(monkeypatch):
    # a few milliseconds of work is not shared out (unless threads is given), larger is
    seen = []
    workers = kde_exact.run_workers

    def recording(fn, n):
        seen.append(n)
        return workers(fn, n)

    monkeypatch.setattr(kde_exact, "run_workers", recording)
    X = np.random.default_rng(0).normal(size=(2000, 2))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        log_kernel_sums(X[:600], X, [0.5])              # 1.2e6 terms
        log_kernel_sums(X[:600], X, [0.5], threads=2)
        monkeypatch.setattr(kde_exact, "ONE_THREAD_TERMS", 1000)
        log_kernel_sums(X[:600], X, [0.5])
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2, 2]


def test_the_engines_never_import_the_estimator():
    # the package's imports (lazy ones included) point one way: estimator -> engines ->
    # exact, so an engine can be read, tested and changed without the estimator
    import ast
    import pathlib

    import densbench.estimators.kde as package

    root = pathlib.Path(package.__file__).parent
    imports = {}
    for path in root.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        prefix = "densbench.estimators.kde."
        imports[path.stem] = {m[len(prefix):].split(".")[0] for m in found
                              if m.startswith(prefix)}
    assert imports["exact"] == set() and imports["lattice"] == set()
    assert imports["bandwidth"] == set() and imports["tree"] == {"exact"}
    assert imports["estimator"] == {"exact", "tree", "lattice", "bandwidth"}
