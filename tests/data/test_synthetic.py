"""Synthetic datasets: exact densities checked against references this module did not write.

- normalization: exp(log_prob) integrates to 1 on fine 2-D grids;
- sampler vs log_prob: the Monte-Carlo cross-entropy mean(-log p(x)), x ~ sampler, equals an
  independently known entropy (closed forms, Gaussian-mixture entropy bounds, or a
  Kozachenko-Leonenko k-NN estimate that never calls log_prob);
- gmm10/gmm50: log_prob equals SciPy's per-component logpdf + logsumexp, and sample moments
  equal the mixture's moments;
- splits, provenance (params) and bad parameters.
"""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.special import digamma, gammaln, logsumexp
from scipy.stats import multivariate_normal

import densbench as db
from densbench.data.synthetic import (
    BananaTruth,
    CheckerboardTruth,
    FunnelTruth,
    GaussianMixtureTruth,
)

ALL = ["eight_gaussians", "grid_5x5", "checkerboard", "banana", "funnel", "gmm10", "gmm50"]
MIXTURES = ["eight_gaussians", "grid_5x5", "gmm10", "gmm50"]
N_MC = 20_000  # draws for the entropy comparisons
LOG_2PI_E = math.log(2 * math.pi * math.e)


def draw(name: str, n: int = N_MC, seed: int = 123, **params) -> tuple[db.data.Dataset, np.ndarray]:
    """The dataset (truth) and ``n`` draws from its sampler, through the public loader."""
    ds = db.data.load(name, seed=seed, n_train=n, n_val=1, n_test=1, **params)
    return ds, ds.train


def kl_entropy(X: np.ndarray, k: int = 3) -> tuple[float, float]:
    """k-NN estimate of the differential entropy (nats) of the sample ``X`` and its SE.

    Kozachenko & Leonenko (1987), Sample estimate of the entropy of a random vector, Problems
    of Information Transmission 23(2), 95-101; k-th neighbour form as in Kraskov, Stoegbauer &
    Grassberger (2004), Phys. Rev. E 69, 066138, eq. (20):
    H = psi(n) - psi(k) + log V_d + (d / n) sum_i log eps_i, with eps_i the distance to the
    k-th nearest neighbour and V_d the volume of the unit d-ball. The SE is the naive one of
    the per-point terms (they are only weakly dependent). Uses no density, only distances.
    """
    n, d = X.shape
    dist, _ = cKDTree(X).query(X, k=k + 1)  # column 0 is the point itself
    terms = d * np.log(dist[:, k])
    log_vd = 0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1)
    h = digamma(n) - digamma(k) + log_vd + float(np.mean(terms))
    return float(h), float(np.std(terms, ddof=1) / math.sqrt(n))


def cross_entropy(truth, X: np.ndarray) -> tuple[float, float]:
    """mean(-log p(x)) over the rows of ``X`` and its Monte-Carlo SE."""
    nll = -truth.log_prob(X)
    assert np.all(np.isfinite(nll))
    return float(np.mean(nll)), float(np.std(nll, ddof=1) / math.sqrt(len(nll)))


# Tolerance of the k-NN comparison: 4 combined SEs (MC mean and k-NN terms; they share the
# sample and are positively correlated, so this is conservative) plus 0.03 nats for the
# k-NN estimator's finite-sample bias (observed about -0.02 on grid_5x5 and -0.01 on
# eight_gaussians at n = 20,000, k = 3: sharp modes; a wrong sd of 0.3 vs 0.2 moves the
# cross-entropy by 0.42, far outside this tolerance of about 0.07).
KNN_BIAS = 0.03


def assert_matches_knn_entropy(truth, X: np.ndarray) -> None:
    h_mc, se_mc = cross_entropy(truth, X)
    h_kl, se_kl = kl_entropy(X)
    tol = 4 * math.hypot(se_mc, se_kl) + KNN_BIAS
    assert abs(h_mc - h_kl) <= tol, (h_mc, h_kl, tol)


def mixture_entropy_bounds(t: GaussianMixtureTruth) -> tuple[float, float]:
    """H(X | Z) <= H(X) <= H(X | Z) + H(Z) for a mixture with component label Z."""
    _, logdets = np.linalg.slogdet(t.covs)
    h_given_z = float(np.sum(t.weights * 0.5 * (t.dim * LOG_2PI_E + logdets)))
    h_z = float(-np.sum(t.weights * np.log(t.weights)))
    return h_given_z, h_given_z + h_z


# --------------------------------------------------------------------------------------------
# registry


def test_all_registered_with_a_one_line_description():
    assert set(ALL) <= set(db.data.names())
    for name in ALL:
        desc = db.data.describe(name)
        assert desc and "\n" not in desc


# --------------------------------------------------------------------------------------------
# 1. normalization on 2-D grids (midpoint rule; exact for the checkerboard on an aligned grid)


def midpoint_integral(log_prob, box_x, box_y, h) -> float:
    xs = np.arange(box_x[0] + h / 2, box_x[1], h)
    ys = np.arange(box_y[0] + h / 2, box_y[1], h)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    vals = np.exp(log_prob(np.column_stack([gx.ravel(), gy.ravel()])))
    return float(np.sum(vals) * h * h)


GRIDS = {
    # name: (box x, box y, step); each box holds all but < 1e-8 of the mass
    "eight_gaussians": ((-3.5, 3.5), (-3.5, 3.5), 0.01),  # means at radius 2, sd 0.2
    "grid_5x5": ((-3.0, 3.0), (-3.0, 3.0), 0.01),  # means in [-2, 2], sd 0.1
    "checkerboard": ((-2.5, 2.5), (-2.5, 2.5), 0.01),  # support [-2, 2]^2; margin checks 0
    "banana": ((-7.0, 7.0), (-5.0, 50.0), 0.02),  # x2 = z2 + x1^2 - 1 reaches 48 at |x1| = 7
}


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_density_integrates_to_one(name):
    bx, by, h = GRIDS[name]
    total = midpoint_integral(db.data.load(name, n_train=1, n_val=1, n_test=1).truth.log_prob,
                              bx, by, h)
    assert abs(total - 1.0) <= 0.01, total


def test_funnel_density_integrates_to_one():
    # In (v, x1) the conditional sd of x1, e^(v/2), spans e^-9 .. e^9 over v in +-6 sd, so no
    # fixed grid resolves it (a box wide enough for v = 18 is far too coarse at v = -18). We
    # integrate in (v, u) with x1 = u e^(v/2) and the Jacobian e^(v/2), still evaluating the
    # module's log_prob at the mapped points; the box v in [-18, 18], u in [-8, 8] holds all
    # but ~1e-9 of the mass, so the usual 0.01 tolerance applies.
    truth = db.data.load("funnel", n_train=1, n_val=1, n_test=1).truth
    h_v, h_u = 0.02, 0.01
    v = np.arange(-18 + h_v / 2, 18, h_v)
    u = np.arange(-8 + h_u / 2, 8, h_u)
    gv, gu = np.meshgrid(v, u, indexing="ij")
    x1 = gu * np.exp(gv / 2)
    dens = np.exp(truth.log_prob(np.column_stack([gv.ravel(), x1.ravel()])))
    total = float(np.sum(dens * np.exp(gv.ravel() / 2)) * h_v * h_u)
    assert abs(total - 1.0) <= 0.01, total


# --------------------------------------------------------------------------------------------
# 2. sampler and log_prob agree: mean(-log p) over draws == an independent entropy value


CLOSED_FORM = [
    # (name, params, entropy)
    ("checkerboard", {}, math.log(8)),  # uniform on area 8
    ("banana", {}, LOG_2PI_E + 0.5 * math.log(1.0 * 0.5**2)),  # unit Jacobian: base Gaussian
    ("banana", {"curvature": 3.0}, LOG_2PI_E + 0.5 * math.log(1.0 * 0.5**2)),
    # H(v) + E_v[(dim-1)/2 log(2 pi e e^v)] with E[v] = 0
    ("funnel", {}, 0.5 * math.log(2 * math.pi * math.e * 9)
     + 0.5 * LOG_2PI_E),
    ("funnel", {"dim": 5}, 0.5 * math.log(2 * math.pi * math.e * 9) + 4 * 0.5 * LOG_2PI_E),
]


@pytest.mark.parametrize(("name", "params", "entropy"), CLOSED_FORM,
                         ids=[f"{c[0]}{c[1] or ''}" for c in CLOSED_FORM])
def test_cross_entropy_matches_closed_form_entropy(name, params, entropy):
    ds, X = draw(name, **params)
    h_mc, se = cross_entropy(ds.truth, X)
    assert abs(h_mc - entropy) <= 4 * se + 1e-9, (h_mc, entropy, se)  # 4 Monte-Carlo SEs


@pytest.mark.parametrize("name", ["eight_gaussians", "grid_5x5"])
def test_cross_entropy_matches_knn_entropy(name):
    ds, X = draw(name)
    assert_matches_knn_entropy(ds.truth, X)


@pytest.mark.parametrize("name", MIXTURES)
def test_cross_entropy_within_mixture_entropy_bounds(name):
    ds, X = draw(name)
    h_mc, se = cross_entropy(ds.truth, X)
    lo, hi = mixture_entropy_bounds(ds.truth)
    assert lo - 4 * se <= h_mc <= hi + 4 * se, (lo, h_mc, hi, se)


# --------------------------------------------------------------------------------------------
# 4. the comparison has teeth: a wrong density is caught


def test_wrong_density_is_detected_by_the_entropy_check():
    right = db.data.load("eight_gaussians", n_train=1, n_val=1, n_test=1).truth
    _, X_wide = draw("eight_gaussians", sd=0.3)  # samples from sd 0.3, density of sd 0.2
    with pytest.raises(AssertionError):
        assert_matches_knn_entropy(right, X_wide)
    # and the same samples pass against their own density (the check is not just strict)
    assert_matches_knn_entropy(draw("eight_gaussians", n=1, sd=0.3)[0].truth, X_wide)


# --------------------------------------------------------------------------------------------
# 3. gmm10 / gmm50 against SciPy, and sampler moments


def scipy_mixture_logpdf(t: GaussianMixtureTruth, X: np.ndarray) -> np.ndarray:
    comps = [np.log(w) + multivariate_normal(mean=m, cov=c).logpdf(X)
             for w, m, c in zip(t.weights, t.means, t.covs, strict=True)]
    return logsumexp(np.column_stack(comps), axis=1)


@pytest.mark.parametrize("name", ["gmm10", "gmm50", "eight_gaussians"])
def test_mixture_log_prob_matches_scipy(name):
    ds = db.data.load(name, seed=0, n_train=10, n_val=10, n_test=2000)
    far = np.random.default_rng(7).standard_normal((200, ds.dim)) * 10  # stability far out
    X = np.vstack([ds.test, far])
    ours, ref = ds.log_prob(X), scipy_mixture_logpdf(ds.truth, X)
    assert np.all(np.isfinite(ours))
    assert np.max(np.abs(ours - ref)) <= 1e-8


@pytest.mark.parametrize("name", ["gmm10", "gmm50"])
def test_mixture_sample_moments(name):
    ds, X = draw(name, seed=5)
    t = ds.truth
    assert ds.params["n_components"] == t.n_components == 5
    w = t.weights
    mean = w @ t.means
    cov = np.einsum("k,kij->ij", w, t.covs + np.einsum("ki,kj->kij", t.means, t.means))
    cov -= np.outer(mean, mean)
    n = len(X)
    # means: 5 SEs per coordinate
    assert np.all(np.abs(X.mean(axis=0) - mean) <= 5 * np.sqrt(np.diag(cov) / n))
    # covariances about the true mean, entrywise, with the empirical SE of each product
    Xc = X - mean
    S = Xc.T @ Xc / n
    var_prod = (Xc**2).T @ (Xc**2) / n - S**2
    assert np.all(np.abs(S - cov) <= 5 * np.sqrt(var_prod / n))


# --------------------------------------------------------------------------------------------
# 5. splits, provenance, fixed truth


@pytest.mark.parametrize("name", ALL)
def test_splits_fixed_disjoint_and_truth_independent_of_seed(name):
    kw = {"n_train": 200, "n_val": 50, "n_test": 100}
    a, b, c = (db.data.load(name, seed=s, **kw) for s in (0, 0, 1))
    d = a.dim
    for ds in (a, c):
        assert (ds.train.shape, ds.val.shape, ds.test.shape) == ((200, d), (50, d), (100, d))
        assert all(ds.split(s).dtype == np.float64 for s in ("train", "val", "test"))
        assert ds.kind == "continuous" and ds.has_truth and ds.name == name
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(a.split(s), b.split(s))
        assert not np.array_equal(a.split(s), c.split(s))
    rows = [set(map(tuple, a.split(s))) for s in ("train", "val", "test")]
    assert sum(map(len, rows)) == 350 and len(set.union(*rows)) == 350
    # the true distribution does not depend on the split seed
    P = np.vstack([a.test, c.test])
    np.testing.assert_array_equal(a.log_prob(P), c.log_prob(P))
    # every loader parameter is recorded, with its value
    sig = inspect.signature(db.data.REGISTRY.get(name))
    expected = {p.name: p.default for p in sig.parameters.values() if p.name != "seed"}
    expected.update(kw)
    assert a.params == expected


def test_non_default_params_are_used_and_recorded():
    ds = db.data.load("funnel", seed=0, n_train=30, n_val=5, n_test=5, dim=4)
    assert ds.train.shape == (30, 4) and ds.params["dim"] == 4
    g0 = db.data.load("gmm10", n_train=5, n_val=5, n_test=5)
    g1 = db.data.load("gmm10", n_train=5, n_val=5, n_test=5, truth_seed=1)
    g3 = db.data.load("gmm10", n_train=5, n_val=5, n_test=5, n_components=3)
    assert g1.params["truth_seed"] == 1 and not np.allclose(g0.truth.means, g1.truth.means)
    assert g3.truth.n_components == 3 and g3.params["n_components"] == 3
    e = db.data.load("eight_gaussians", n_train=5, n_val=5, n_test=5, radius=3.0, sd=0.5)
    assert e.params["radius"] == 3.0 and np.allclose(np.linalg.norm(e.truth.means, axis=1), 3)


# --------------------------------------------------------------------------------------------
# 6. bad parameters and bad inputs


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [{"n_train": 0}, {"n_val": -1}, {"n_test": 1.5},
                                 {"n_train": True}, {"seed": -1}, {"n_tran": 5}],
                         ids=["n_train=0", "n_val=-1", "n_test=1.5", "n_train=True",
                              "seed=-1", "unknown"])
def test_bad_sizes_and_unknown_params_name_the_dataset(name, bad):
    with pytest.raises(ValueError, match=f"dataset {name}"):
        db.data.load(name, **bad)


@pytest.mark.parametrize(("name", "bad"), [
    ("eight_gaussians", {"sd": 0.0}), ("eight_gaussians", {"sd": float("nan")}),
    ("eight_gaussians", {"radius": -1.0}), ("grid_5x5", {"sd": -0.1}),
    ("banana", {"curvature": float("inf")}), ("funnel", {"dim": 1}),
    ("funnel", {"dim": 2.5}), ("gmm10", {"n_components": 0}), ("gmm50", {"truth_seed": -1}),
])
def test_bad_shape_params_name_the_dataset(name, bad):
    with pytest.raises(ValueError, match=f"dataset {name}: {next(iter(bad))}"):
        db.data.load(name, **bad)


@pytest.mark.parametrize("truth", [
    GaussianMixtureTruth([1.0], [[0.0, 0.0]], [np.eye(2)]), CheckerboardTruth(),
    BananaTruth(), FunnelTruth(3)], ids=lambda t: type(t).__name__)
def test_truth_refuses_wrong_dimension(truth):
    for X in (np.zeros((4, truth.dim + 1)), np.zeros(truth.dim)):
        with pytest.raises(ValueError, match=type(truth).__name__):
            truth.log_prob(X)


def test_gaussian_mixture_truth_validates_parameters():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixtureTruth([0.5, 0.6], [[0.0], [1.0]], [[[1.0]], [[1.0]]])
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixtureTruth([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match="covs must have shape"):
        GaussianMixtureTruth([1.0], [[0.0, 0.0]], [np.eye(3)])


def test_extreme_inputs_give_exact_limits_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = FunnelTruth(2).log_prob(np.array([[-800.0, 1.0], [-800.0, 0.0], [0.0, 1e200]]))
        assert f[0] == -np.inf and np.isfinite(f[1]) and f[2] == -np.inf
        b = BananaTruth().log_prob(np.array([[1e200, 0.0], [0.0, 1e300]]))
        assert np.all(b == -np.inf)
        c = CheckerboardTruth().log_prob(np.array([[0.5, 0.5], [np.inf, 0.5], [np.nan, 0.0]]))
        assert c[0] == -math.log(8) and c[1] == -np.inf and np.isnan(c[2])
        g = db.data.load("grid_5x5", n_train=1, n_val=1, n_test=1).log_prob(
            np.array([[1e3, -1e3]]))
        assert np.isfinite(g[0])  # logsumexp keeps far points finite
