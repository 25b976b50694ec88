"""Known answers for the sample-quality metrics (densbench.metrics.samples).

Two fixed data sets, a 2-D two-component Gaussian mixture (n = m = 2000) and a 10-D standard
Gaussian (n = m = 1000), are scored against themselves (an independent second draw) and
against copies shifted by 0.5, 1 and 2 standard deviations along one axis. References are
SciPy, POT and direct O(n^2) NumPy formulas on small inputs, run with tiny blocks so that
the blocked code paths are the ones compared.
"""

import functools
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy import stats
from scipy.spatial.distance import cdist, pdist

from densbench.data.synthetic import GaussianMixtureTruth
from densbench.metrics import Metric
from densbench.metrics import samples as S
from densbench.metrics.catalogue import SAMPLE_METRICS
from densbench.registry import UnknownNameError


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These inputs are small: one intra-op thread avoids idle-thread waits on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of 7 x 11 distances, so that every reference test crosses block edges."""
    monkeypatch.setattr(S.pairwise, "_BLOCK_ROWS", 7)
    monkeypatch.setattr(S.pairwise, "_BLOCK_COLS", 11)


# --------------------------------------------------------------------------------------------
# the shift experiment

# components at (-2, 0) and (2, 0), identity covariances: axis 1 has standard deviation 1
MIXTURE = GaussianMixtureTruth([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], [np.eye(2), np.eye(2)])
# name: (n = m, shifted axis, precision/recall expected above this when nothing is shifted)
DATASETS = {"mixture2d": (2000, 1, 0.95), "gauss10d": (1000, 0, 0.85)}
SHIFTS = (0.0, 0.5, 1.0, 2.0)


def _draw(name: str, seed: int) -> np.ndarray:
    n = DATASETS[name][0]
    rng = np.random.default_rng(seed)
    return MIXTURE.sample(n, rng) if name == "mixture2d" else rng.standard_normal((n, 10))


def _shifted(name: str, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples X (seed 2) moved by ``shift`` sd along the data set's axis; held-out Y (seed 1)."""
    X = _draw(name, 2)
    X[:, DATASETS[name][1]] += shift
    return X, _draw(name, 1)


@functools.cache
def _scores(name: str, shift: float) -> dict[str, S.SampleScore]:
    X, Y = _shifted(name, shift)
    return S.sample_metrics(X, Y, seed=0)


def _expected_coverage(n_fake: int, n_real: int, k: int) -> float:
    """E[coverage] for one continuous distribution (Naeem et al. 2020)."""
    return 1.0 - math.prod((n_real - i) / (n_fake + n_real - i) for i in range(1, k + 1))


@pytest.mark.parametrize("name", DATASETS)
def test_same_distribution_scores_at_the_floor(name):
    n, _, pr_floor = DATASETS[name]
    s, half = _scores(name, 0.0), _scores(name, 0.5)
    assert set(s) == set(SAMPLE_METRICS) - {"memorization_ratio"}
    for key in ("mmd2", "energy_distance"):       # unbiased: 0 +- SE
        assert abs(s[key].value) < 3 * s[key].se, key
    assert abs(s["c2st_accuracy"].value - 0.5) < 0.05
    # k = 5: ~0.99 in 2-D, ~0.92 in 10-D (below 1 at finite k, lower with the dimension)
    assert s["precision"].value > pr_floor and s["recall"].value > pr_floor
    assert abs(s["density"].value - 1.0) < 0.05              # E[density] = 1
    assert abs(s["coverage"].value - _expected_coverage(n, n, 5)) < 0.02   # ~0.969
    # distances without a zero floor: well below their value at a 0.5 sd shift
    assert s["frechet_distance"].value < half["frechet_distance"].value / 4
    assert s["sliced_wasserstein"].value < half["sliced_wasserstein"].value / 2


@pytest.mark.parametrize("name", DATASETS)
def test_shift_is_detected(name):
    half, one = _scores(name, 0.5), _scores(name, 1.0)
    for key in ("mmd2", "energy_distance"):
        assert half[key].value > 3 * half[key].se, key
    assert one["c2st_accuracy"].value > 0.55
    base = _scores(name, 0.0)["coverage"]
    assert one["coverage"].value < base.value - 3 * base.se


# +1: grows with the shift, -1: falls. Precision, recall and density barely move at 0.5 sd
# (measured 2-D precision 0.9945 -> 0.9925, density 0.985 -> 0.985), so they are checked on
# 0 / 1 / 2 sd; the others on every shift.
DIRECTIONS = {"mmd2": 1, "energy_distance": 1, "sliced_wasserstein": 1, "c2st_accuracy": 1,
              "frechet_distance": 1, "coverage": -1, "precision": -1, "recall": -1,
              "density": -1}
COARSE = {"precision", "recall", "density"}


@pytest.mark.parametrize("key", DIRECTIONS)
@pytest.mark.parametrize("name", DATASETS)
def test_metric_moves_monotonically_with_the_shift(name, key):
    shifts = (0.0, 1.0, 2.0) if key in COARSE else SHIFTS
    values = [DIRECTIONS[key] * _scores(name, shift)[key].value for shift in shifts]
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values


@pytest.mark.parametrize("name", DATASETS)
def test_frechet_shift_adds_the_closed_form(name):
    # a shift leaves the covariance alone: FD(delta) - FD(0) = (2 delta D + delta^2) / s^2
    # with D the mean difference along the axis and s held-out sd (standardization by Y)
    X, Y = _shifted(name, 0.0)
    axis = DATASETS[name][1]
    d_mean, sd = X[:, axis].mean() - Y[:, axis].mean(), Y[:, axis].std(ddof=1)
    base = _scores(name, 0.0)["frechet_distance"].value
    for shift in SHIFTS[1:]:
        expected = (2 * shift * d_mean + shift**2) / sd**2
        got = _scores(name, shift)["frechet_distance"].value - base
        assert got == pytest.approx(expected, abs=1e-10)
        # about delta^2: D / s ~ N(0, 2 / n) sd, so 3 of its sd in the cross term at most
        assert abs(got - shift**2) < 6 * shift * math.sqrt(2 / len(X)) + 0.05 * shift**2


# --------------------------------------------------------------------------------------------
# memorization


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize(("kind", "low", "high"), [
    ("copies", 0.0, 0.0),          # samples are the training points
    ("near_copies", 0.0, 0.05),    # training points + 0.1% sd noise
    ("fresh", 0.85, 1.15),         # a new draw of the distribution
])
def test_memorization_ratio_flags_copies(name, kind, low, high):
    train, Y = _draw(name, 3)[:800], _draw(name, 4)[:800]
    X = {"copies": train,
         "near_copies": train + 1e-3 * np.random.default_rng(5).standard_normal(train.shape),
         "fresh": _draw(name, 6)[:800]}[kind]
    s = S.memorization_ratio(X, train, Y)
    assert low <= s.value <= high
    assert s.se is not None and s.se < 0.1
    frac = s.extra["frac_below_heldout_q05"]
    assert frac == 1.0 if kind != "fresh" else abs(frac - 0.05) < 0.03


def test_memorization_needs_held_out_data():
    train = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="held-out"):
        S.memorization_ratio(train, train, train)


# --------------------------------------------------------------------------------------------
# agreement with references


def _rbf_mean(A, B, hs):
    d2 = cdist(A, B, "sqeuclidean")
    return sum(np.exp(-d2 / (2 * h * h)) for h in hs) / len(hs)


def _mmd2_direct(X, Y, hs):
    n, m = len(X), len(Y)
    kxx, kyy = _rbf_mean(X, X, hs), _rbf_mean(Y, Y, hs)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy))
            / (m * (m - 1)) - 2 * _rbf_mean(X, Y, hs).mean())


@pytest.mark.parametrize("bandwidths", [None, [0.3], [0.5, 2.0]])
def test_mmd2_matches_direct_numpy(tiny_blocks, bandwidths):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 3)), rng.normal(0.3, 1.2, size=(45, 3)) + 5.0
    s = S.mmd2(X, Y, bandwidths=bandwidths)
    if bandwidths is None:      # 75 pooled points < 1000: the median of all distances
        med = np.median(pdist(np.vstack([X, Y])))
        bandwidths = [0.5 * med, med, 2 * med]
        assert s.extra["median_distance"] == pytest.approx(med, rel=1e-14)
    assert s.extra["bandwidths"] == pytest.approx(bandwidths, rel=1e-14)
    assert s.value == pytest.approx(_mmd2_direct(X, Y, bandwidths), abs=1e-12)


def test_median_heuristic_subsamples_by_seed():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(900, 2)), rng.normal(size=(900, 2))
    a, b = S.median_heuristic(X, Y, seed=0), S.median_heuristic(X, Y, seed=1)
    assert a == S.median_heuristic(X, Y, seed=0) and a != b
    assert a == pytest.approx(np.median(pdist(np.vstack([X, Y]))), rel=0.03)


def test_energy_distance_matches_scipy_in_1d(tiny_blocks):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=40), rng.normal(0.5, 2.0, size=57)
    v = S.energy_distance(x, y, unbiased=False)
    assert math.sqrt(v.value) == pytest.approx(stats.energy_distance(x, y), abs=1e-10)


def _energy_direct(X, Y):
    """The unbiased energy distance from SciPy's full distance matrices."""
    n, m = len(X), len(Y)
    return (2 * cdist(X, Y).mean() - cdist(X, X).sum() / (n * (n - 1))
            - cdist(Y, Y).sum() / (m * (m - 1)))


def test_unbiased_energy_distance_matches_direct_numpy(tiny_blocks):
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(30, 3)), rng.normal(size=(45, 3)) + [1.0, 0.0, 0.0]
    assert S.energy_distance(X, Y).value == pytest.approx(_energy_direct(X, Y), abs=1e-12)


def test_sample_metrics_shares_one_distance_pass_with_the_same_results(tiny_blocks):
    """sample_metrics computes mmd2 and energy_distance in one pass over the distance
    blocks (one distance computation, two kernels): the values, SEs and extras equal the
    two separate calls exactly, and the energy distance against the direct sum."""
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(30, 3)), rng.normal(0.2, 1.1, size=(45, 3))
    both = S.sample_metrics(X, Y, which=["mmd2", "energy_distance"], seed=3)
    alone_scores = {"mmd2": S.mmd2(X, Y, seed=3), "energy_distance": S.energy_distance(X, Y)}
    for name, alone in alone_scores.items():
        assert (both[name].value, both[name].se) == (alone.value, alone.se), name
        assert both[name].extra == alone.extra, name
    assert both["energy_distance"].value == pytest.approx(_energy_direct(X, Y), abs=1e-12)


@pytest.mark.parametrize(("shift", "low", "high"), [
    (1.0, 0.8, 1.25),     # a real difference: the SE is the replicates' spread
    (0.0, 1.0, 1.8),      # no difference: conservative (measured ~1.5x in variance)
])
def test_u_statistic_se_matches_the_spread_over_replicates(shift, low, high):
    # 1000 replicates of n = m = 50: the Monte-Carlo variance is good to ~ +-8%
    rng = np.random.default_rng(11)
    mmd, energy = [], []
    for _ in range(1000):
        X, Y = rng.standard_normal((50, 2)), rng.standard_normal((50, 2))
        X[:, 0] += shift
        mmd.append(S.mmd2(X, Y, bandwidths=[1.0]))
        energy.append(S.energy_distance(X, Y))
    for scores in (mmd, energy):
        ratio = np.mean([s.se ** 2 for s in scores]) / np.var([s.value for s in scores])
        assert low < ratio < high, ratio


def test_sliced_wasserstein_matches_scipy_in_1d():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=300), rng.gamma(2.0, size=451)
    s = S.sliced_wasserstein(x, y, n_projections=10)   # every direction is +1 or -1
    assert s.value == pytest.approx(stats.wasserstein_distance(x, y), abs=1e-10)
    assert s.se < 1e-12
    # p = 2 on equal sizes: the root mean squared difference of the sorted samples
    y2 = y[:300]
    s2 = S.sliced_wasserstein(x, y2, n_projections=10, p=2)
    assert s2.value == pytest.approx(np.sqrt(np.mean((np.sort(x) - np.sort(y2)) ** 2)),
                                     abs=1e-10)


def test_sliced_wasserstein_se_matches_the_spread_over_seeds(monkeypatch):
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(400, 3)) * [1.0, 2.0, 0.5], rng.normal(size=(400, 3))
    runs = [S.sliced_wasserstein(X, Y, n_projections=100, seed=seed) for seed in range(40)]
    ratio = np.mean([r.se for r in runs]) / np.std([r.value for r in runs], ddof=1)
    assert 0.7 < ratio < 1.4, ratio
    # POT called on groups of 7 directions gives the same figure
    monkeypatch.setattr(S.transport, "_PROJECTION_BLOCK", 7 * 400)
    again = S.sliced_wasserstein(X, Y, n_projections=100, seed=0)
    assert again.value == pytest.approx(runs[0].value, abs=1e-12)
    assert again.se == pytest.approx(runs[0].se, abs=1e-12)


def _prdc_reference(fake, real, k):
    """Naeem et al.'s definitions, written the way their code writes them (real x fake)."""
    r_real = np.sort(cdist(real, real), axis=1)[:, k]     # column 0 is the point itself
    r_fake = np.sort(cdist(fake, fake), axis=1)[:, k]
    d = cdist(real, fake)
    return {"precision": (d < r_real[:, None]).any(axis=0).mean(),
            "recall": (d < r_fake[None, :]).any(axis=1).mean(),
            "density": (d < r_real[:, None]).sum(axis=0).mean() / k,
            "coverage": (d.min(axis=1) < r_real).mean()}


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_matches_the_definitions(tiny_blocks, k):
    rng = np.random.default_rng(6)
    fake, real = rng.normal(0.3, 1.3, size=(60, 3)), rng.normal(size=(47, 3))
    got, want = S.prdc(fake, real, k=k), _prdc_reference(fake, real, k)
    for key, value in want.items():
        assert got[key].value == pytest.approx(value, abs=1e-12), key
        assert got[key].extra == {"k": k}


def test_gaussian_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    root = scipy.linalg.sqrtm(c1 @ c2).real       # the usual FID code's formula
    fid = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * root)
    assert S.gaussian_frechet_distance(mu1, c1, mu2, c2) == pytest.approx(fid, rel=1e-9)
    # singular covariances stay exact: points on a line vs on another line, 1-D formula
    e = np.diag([1.0, 0.0])
    assert S.gaussian_frechet_distance(np.zeros(2), 4 * e, np.zeros(2), e) == pytest.approx(1.0)
    assert S.gaussian_frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_features_are_used_as_given():
    rng = np.random.default_rng(8)
    X, Y = rng.normal(size=(300, 3)), rng.normal(size=(200, 3)) * 2.0
    raw = S.gaussian_frechet_distance(X.mean(0), np.cov(X.T), Y.mean(0), np.cov(Y.T))
    assert S.frechet_distance(X, Y, features=lambda a: a).value == pytest.approx(raw)
    doubled = S.frechet_distance(X, Y, features=lambda a: np.hstack([a, a]))
    assert doubled.value == pytest.approx(2 * raw) and doubled.extra["n_features"] == 6
    # default: standardized by Y, so rescaling both samples changes nothing
    assert S.frechet_distance(3 * X, 3 * Y).value == pytest.approx(
        S.frechet_distance(X, Y).value, rel=1e-10)


def test_c2st_balances_the_classes():
    rng = np.random.default_rng(9)
    s = S.c2st(rng.normal(size=(150, 2)), rng.normal(size=(400, 2)) + [3.0, 0.0], folds=4)
    assert s.extra["n_per_class"] == 150 and len(s.extra["fold_accuracies"]) == 4
    assert s.value > 0.85
    assert s.se == pytest.approx(np.std(s.extra["fold_accuracies"], ddof=1) / 2)


def _sklearn_mlp_c2st(X: np.ndarray, Y: np.ndarray, seed: int) -> float:
    """The classifier c2st used before its PyTorch one: scikit-learn's MLP (same layers),
    fitted fold by fold with its own early stopping, on the same folds."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    z = np.concatenate([X, Y])
    labels = np.repeat([0, 1], [len(X), len(Y)])
    accuracies = []
    with threadpool_limits(1):
        for fit, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(z, labels):
            clf = make_pipeline(StandardScaler(), MLPClassifier(
                hidden_layer_sizes=(64, 64), max_iter=200, early_stopping=True,
                random_state=seed))
            clf.fit(z[fit], labels[fit])
            accuracies.append(np.mean(clf.predict(z[test]) == labels[test]))
    return float(np.mean(accuracies))


def _close_pairs(n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pairs of samples whose distributions differ a little (Bayes accuracy 0.56-0.6)."""
    rng = np.random.default_rng(21)
    corr = np.linalg.cholesky([[1.0, 0.6], [0.6, 1.0]])
    heavy = rng.standard_t(4, size=(n, 5)) / math.sqrt(2.0)   # unit variance, heavy tails
    return {"shift": (rng.normal(size=(n, 2)) + [0.3, 0.0], rng.normal(size=(n, 2))),
            "scale": (rng.normal(size=(n, 2)) * [1.3, 1.0], rng.normal(size=(n, 2))),
            "correlation": (rng.normal(size=(n, 2)) @ corr.T, rng.normal(size=(n, 2))),
            "tails_5d": (heavy, rng.normal(size=(n, 5)))}


def test_c2st_has_the_power_of_the_scikit_learn_classifier_it_replaced():
    # on each close pair it tells the samples apart at least as well (to within twice the
    # binomial SE of one accuracy), and on the four together no worse on average
    pairs = _close_pairs(600)
    ours = {k: S.c2st(X, Y, seed=0) for k, (X, Y) in pairs.items()}
    theirs = {k: _sklearn_mlp_c2st(X, Y, seed=0) for k, (X, Y) in pairs.items()}
    for key, s in ours.items():
        assert s.value > theirs[key] - 2 * s.extra["binomial_se"], (key, s.value, theirs)
    assert np.mean([s.value for s in ours.values()]) >= np.mean(list(theirs.values())) - 0.01


# --------------------------------------------------------------------------------------------
# determinism, metadata and the entry point


def test_everything_is_determined_by_the_seed():
    rng = np.random.default_rng(10)
    X, Y, train = (rng.normal(size=(300, 4)) for _ in range(3))
    a = S.sample_metrics(X, Y, train=train, seed=0)
    b = S.sample_metrics(X, Y, train=train, seed=0)
    c = S.sample_metrics(X, Y, train=train, seed=1)
    assert list(a) == list(SAMPLE_METRICS)
    assert {k: (v.value, v.se) for k, v in a.items()} == {k: (v.value, v.se)
                                                          for k, v in b.items()}
    for key in ("sliced_wasserstein", "c2st_accuracy", "memorization_ratio"):
        assert (a[key].value, a[key].se) != (c[key].value, c[key].se), key


def test_sample_metrics_selects_and_checks_names():
    rng = np.random.default_rng(12)
    X, Y = rng.normal(size=(100, 2)), rng.normal(size=(120, 2))
    s = S.sample_metrics(X, Y, which=["coverage", "mmd2", "precision"])
    assert list(s) == ["coverage", "mmd2", "precision"]
    assert s["coverage"] == S.prdc(X, Y)["coverage"]
    with pytest.raises(UnknownNameError, match="known: mmd2"):
        S.sample_metrics(X, Y, which=["fid"])
    with pytest.raises(ValueError, match="train"):
        S.sample_metrics(X, Y, which=["memorization_ratio"])
    rows = S.to_metrics(s)
    assert rows[0] == Metric("samples_coverage", s["coverage"].value, s["coverage"].se,
                             "fraction")


@pytest.mark.parametrize(("X", "Y", "message"), [
    (np.zeros((10, 2)), np.zeros((10, 3)), "columns"),
    (np.full((10, 2), np.nan), np.zeros((10, 2)), "NaN"),
    (np.zeros((2, 2, 2)), np.zeros((10, 2)), "2-D"),
])
def test_bad_inputs_are_refused(X, Y, message):
    for fn in (S.mmd2, S.energy_distance, S.sliced_wasserstein, S.prdc, S.frechet_distance):
        with pytest.raises(ValueError, match=message):
            fn(X, Y)


# --------------------------------------------------------------------------------------------
# data at extreme scales, and metrics that fail


def _at_scale(factor: float, offset: float = 0.0):
    """Samples, held-out data and training data (2-D, 150 rows each) times ``factor``,
    plus ``offset``; and the same three at ordinary scale."""
    rng = np.random.default_rng(13)
    plain = [rng.normal(size=(150, 2)) + shift for shift in ([0.3, 0.0], 0.0, 0.0)]
    return [a * factor + offset for a in plain], plain


@pytest.mark.parametrize(("factor", "offset"), [(1e155, 0.0), (1e-300, 0.0),
                                                (1e306, 1.6e308)])
def test_sample_metrics_at_extreme_scales_are_in_their_stated_units(factor, offset):
    """Data x1e155, x1e-300, and data near the largest float64 (1.6e308 +- 3e306): each
    metric equals its value at ordinary scale, times the factor for the two in the data's
    units; the energy distance also equals SciPy's direct sum on the rescaled data."""
    (X, Y, train), (x, y, tr) = _at_scale(factor, offset)
    got = S.sample_metrics(X, Y, train=train, seed=0)
    want = S.sample_metrics(x, y, train=tr, seed=0)
    rel = 1e-9
    for name, info in SAMPLE_METRICS.items():
        times = factor if info.unit == "data units" else 1.0
        assert got[name].value == pytest.approx(want[name].value * times, rel=rel,
                                                abs=1e-12 * times), name
        if want[name].se is not None:
            assert got[name].se == pytest.approx(want[name].se * times, rel=rel), name
    direct = _energy_direct((X - offset) / factor, (Y - offset) / factor) * factor
    assert got["energy_distance"].value == pytest.approx(direct, rel=rel)


def test_common_scale_is_a_power_of_two_set_by_the_typical_spread():
    rng = np.random.default_rng(14)
    Y = rng.normal(size=(200, 3))
    assert S.common_scale(Y) == 1.0 == S.common_scale(Y * 1e20)   # ordinary: untouched
    for factor in (1e155, 1e-300, 1e307):
        scale = S.common_scale(Y * factor)
        assert math.frexp(scale)[0] == 0.5 and 0.1 < factor / scale < 10, factor
    one_far_row = np.vstack([Y, np.full((1, 3), 1.7e308)])
    assert S.common_scale(one_far_row) == 1.0


def test_a_failing_metric_is_kept_as_its_own_failure():
    """keep_going: a metric that raises is a NaN with its error (and traceback); the others
    are computed as usual. Held-out rows that copy training rows fail the memorization
    check and nothing else."""
    rng = np.random.default_rng(15)
    X, train = rng.normal(size=(100, 2)), rng.normal(size=(100, 2))
    Y = train[:80]
    with pytest.raises(ValueError, match="memorization_ratio: most held-out points"):
        S.sample_metrics(X, Y, train=train)
    got = S.sample_metrics(X, Y, train=train, keep_going=True)
    bad = got["memorization_ratio"]
    assert math.isnan(bad.value) and bad.se is None
    assert bad.extra["error"].startswith("ValueError: memorization_ratio: most held-out")
    assert "Traceback" in bad.extra["traceback"]
    alone = S.sample_metrics(X, Y, which=[n for n in SAMPLE_METRICS
                                          if n != "memorization_ratio"])
    assert {k: (v.value, v.se) for k, v in got.items() if k in alone} == \
        {k: (v.value, v.se) for k, v in alone.items()}
    rows = {m.metric: m for m in S.to_metrics(got)}
    assert rows["samples_memorization_ratio"].note.startswith(
        "not computed: ValueError: memorization_ratio")
    assert rows["samples_memorization_ratio"].to_dict()["value"] is None
    assert rows["samples_mmd2"].note is None


def test_samples_too_far_from_the_data_fail_every_metric_clearly():
    """Samples at 1e300 beside data of spread 1: their squared distances overflow, so no
    metric is computed from them (C2ST would otherwise report a false 0.5)."""
    rng = np.random.default_rng(16)
    X, Y = rng.normal(size=(60, 2)) * 1e300, rng.normal(size=(60, 2))
    with pytest.raises(ValueError, match="too far apart to compare in float64"):
        S.sample_metrics(X, Y)
    got = S.sample_metrics(X, Y, keep_going=True)
    assert list(got) == [n for n in SAMPLE_METRICS if n != "memorization_ratio"]
    assert all("too far apart" in s.extra["error"] for s in got.values())
