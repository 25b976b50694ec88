"""made and rnn_ar: exact normalization by enumeration, the autoregressive property, known
answers (SciPy's Gaussian, the exact law of a discrete generator), sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

import densbench as db
from densbench.estimators.autoregressive import _Head

NAMES = ["made", "rnn_ar"]
FAST = {"hidden": 32, "max_epochs": 15, "batch_size": 128}


def _all_vectors(d, levels):
    return np.array(list(itertools.product(range(levels), repeat=d)), dtype=np.float64)


# A discrete generator with a known law: z uniform on 0..L-1, then each of the d coordinates
# is z moved by -1 / 0 / +1 with probabilities 0.1 / 0.8 / 0.1, clipped to 0..L-1.
_STEP = {-1: 0.1, 0: 0.8, 1: 0.1}


def _correlated_levels(n, d, levels, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.integers(0, levels, size=(n, 1))
    step = rng.choice([-1, 0, 1], p=[0.1, 0.8, 0.1], size=(n, d))
    return np.clip(z + step, 0, levels - 1).astype(np.float64)


def _true_log_prob(X, levels):
    """log p(x) = log sum_z p(z) prod_j p(x_j | z), enumerated."""
    cond = np.zeros((levels, levels))                       # cond[z, x] = p(x_j = x | z)
    for z in range(levels):
        for s, p in _STEP.items():
            cond[z, min(max(z + s, 0), levels - 1)] += p
    Xi = X.astype(int)
    with np.errstate(divide="ignore"):                      # log 0 = -inf: impossible
        per_z = np.stack([np.log(cond[z, Xi]).sum(1) for z in range(levels)], axis=1)
    return logsumexp(per_z, axis=1) - np.log(levels)


def _gaussian_2d(seed=1):
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    rng = np.random.default_rng(seed)
    return cov, [rng.multivariate_normal([1.0, -2.0], cov, size=n) for n in (3000, 500, 3000)]


# -- exact normalization ------------------------------------------------------------------

@pytest.mark.parametrize(("d", "levels", "conditional"), [
    (8, 2, "bernoulli"),      # all 256 binary vectors
    (3, 4, "categorical"),    # all 64 vectors of 4 levels
])
@pytest.mark.parametrize("name", NAMES)
def test_probabilities_over_every_discrete_vector_sum_to_one(name, d, levels, conditional):
    X = _correlated_levels(500, d, levels)
    est = db.estimators.make(name, levels=levels, **FAST).fit(X)
    assert est.conditional_ == conditional
    total = np.exp(est.score_samples(_all_vectors(d, levels))).sum()
    assert total == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_continuous_density_integrates_to_one_in_1d(name):
    """The mixture conditionals in data units (standardization's Jacobian included)."""
    X = np.random.default_rng(0).gamma(2.0, 3.0, size=(500, 1))
    est = db.estimators.make(name, **FAST).fit(X)
    grid = np.linspace(-60.0, 120.0, 180_001)[:, None]
    total = np.exp(est.score_samples(grid)).sum() * (grid[1, 0] - grid[0, 0])
    assert total == pytest.approx(1.0, abs=1e-4)


# -- the autoregressive property ----------------------------------------------------------

@pytest.mark.parametrize("levels", [None, 5])
@pytest.mark.parametrize("name", NAMES)
def test_conditional_i_depends_only_on_earlier_dimensions(name, levels):
    """Jacobian of the conditional parameters with respect to the (encoded) input: block i
    is zero for inputs j >= i, and nonzero for j = i - 1 (the model does use the past)."""
    d = 6
    rng = np.random.default_rng(0)
    X = (rng.integers(0, 5, size=(100, d)).astype(float) if levels
         else rng.normal(size=(100, d)))
    est = db.estimators.make(name, levels=levels, hidden=16, max_epochs=1).fit(X)
    u = est.head_.encode(torch.as_tensor(X[:20], dtype=torch.float32))
    dep = torch.zeros(d, d)
    for row in u:
        jac = torch.autograd.functional.jacobian(lambda v: est.module_(v[None])[0], row)
        dep += jac.abs().sum(dim=1)                         # (d outputs, d inputs)
    assert torch.all(torch.triu(dep) == 0), "output i depends on some x_j, j >= i"
    # (summed over rows: at one point a ReLU network can have a zero partial derivative)
    assert torch.all(dep.diagonal(-1) > 0), "output i ignores x_{i-1}"


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_of_x_i_is_unchanged_by_later_dimensions(name):
    """Perturbation check through the public scoring path: changing x_j for j > i leaves
    the first i+1 conditional terms as they were."""
    X = np.random.default_rng(0).normal(size=(200, 4))
    est = db.estimators.make(name, **FAST).fit(X)

    def terms(A):
        t = torch.as_tensor((A - est.shift_) / est.scale_, dtype=torch.float32)
        with torch.no_grad():
            return est.head_.log_prob(est.module_(est.head_.encode(t)), t).numpy()

    A = X[:5].copy()
    base = terms(A)
    for j in range(4):
        B = A.copy()
        B[:, j] += 1.7
        np.testing.assert_array_equal(terms(B)[:, :j], base[:, :j])
        assert np.all(terms(B)[:, j] != base[:, j])


# -- known answers ------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_continuous_model_reaches_a_correlated_gaussian(name):
    """Test log-likelihood within 0.04 nats of the true N(mu, cov) (SciPy).

    The mixture conditionals contain the true ones (a Gaussian marginal, and a Gaussian
    conditional with mean linear in x_1), so the gap is the KL from the truth plus noise.
    A Gaussian fitted by ML to 3000 points would have E[KL] = 5 / (2 * 3000) < 0.001 nats;
    the networks' freedom and early stopping on 500 noisy validation points cost more
    (measured 0.009-0.020 nats over settings, SE 0.003 over 3000 test points). 0.04 leaves
    room for those and still catches a wrong normalization, a lost Jacobian or a missed
    correlation (an independent model is 0.51 nats worse).
    """
    cov, (X, V, T) = _gaussian_2d()
    est = db.estimators.make(name, **{**FAST, "max_epochs": 60}).fit(X, V)
    gap = stats.multivariate_normal([1.0, -2.0], cov).logpdf(T) - est.score_samples(T)
    assert abs(gap.mean()) < 0.04, (gap.mean(), gap.std() / np.sqrt(len(gap)))


@pytest.mark.parametrize("name", NAMES)
def test_discrete_model_beats_independent_frequencies(name):
    """On correlated levels the model beats the independent (per-dimension frequency)
    model, and comes near the exact log-probability of the generator."""
    L, d = 5, 6
    X, V, T = (_correlated_levels(n, d, L, seed=s) for n, s in ((2000, 2), (500, 3),
                                                                (2000, 4)))
    est = db.estimators.make(name, levels=L, hidden=64, max_epochs=40, lr=0.01).fit(X, V)
    freq = np.stack([np.bincount(X[:, j].astype(int), minlength=L) + 0.5
                     for j in range(d)])
    freq /= freq.sum(1, keepdims=True)
    independent = np.log(freq[np.arange(d), T.astype(int)]).sum(1).mean()
    truth = _true_log_prob(T, L).mean()
    got = est.score(T)
    # the truth is 1.9 nats per example above the independent model; the model must
    # recover most of it (and cannot beat the truth beyond noise)
    assert truth - independent > 1.5
    assert got > independent + 1.2
    assert got < truth + 0.05


# -- sampling -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_samples_follow_the_model_exactly(name):
    """Ancestral samples of a small categorical model against its own probabilities,
    enumerated: Pearson's chi-square test over all 64 vectors."""
    X = _correlated_levels(500, 3, 4, seed=5)
    est = db.estimators.make(name, levels=4, **FAST).fit(X)
    every = _all_vectors(3, 4)
    p = np.exp(est.score_samples(every))
    S = est.sample(20_000, random_state=0)
    index = (S @ np.array([16.0, 4.0, 1.0])).astype(int)
    observed = np.bincount(index, minlength=64)
    assert stats.chisquare(observed, p / p.sum() * len(S)).pvalue > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_discrete_samples_reproduce_the_data_marginals(name):
    X = _correlated_levels(2000, 4, 5, seed=4)
    est = db.estimators.make(name, levels=5, hidden=64, max_epochs=30).fit(X)
    S = est.sample(4000, random_state=0)
    assert set(np.unique(S)) <= set(range(5))
    for j in range(4):
        p = np.bincount(X[:, j].astype(int), minlength=5) / len(X)
        q = np.bincount(S[:, j].astype(int), minlength=5) / len(S)
        assert np.abs(p - q).max() < 0.04


@pytest.mark.parametrize("name", NAMES)
def test_continuous_samples_reproduce_the_data_marginals(name):
    cov, (X, V, _) = _gaussian_2d()
    est = db.estimators.make(name, **{**FAST, "max_epochs": 60}).fit(X, V)
    S = est.sample(4000, random_state=0)
    np.testing.assert_allclose(S.mean(0), X.mean(0), atol=0.08)
    np.testing.assert_allclose(np.cov(S.T), np.cov(X.T), atol=0.1)
    q = [0.05, 0.25, 0.5, 0.75, 0.95]
    # 0.15: the fitted models sit 0.01-0.02 nats from the truth, which allows a shift of
    # x_2's conditional mean by about 0.1 (KL = shift^2 / (2 * 0.36) for the conditional
    # variance 1 - 0.8^2; rnn_ar's sample median of x_2 is off by 0.12); the quantiles'
    # own sampling error is about 0.03
    np.testing.assert_allclose(np.quantile(S, q, axis=0), np.quantile(X, q, axis=0),
                               atol=0.15)


@pytest.mark.parametrize("levels", [None, 4])
@pytest.mark.parametrize("name", NAMES)
def test_sampler_draws_from_the_networks_conditionals(name, levels):
    """The sequential sampler (MADE: d passes; GRU: one step at a time, carrying its
    state) feeds the head the same parameters as one full pass over the drawn samples."""
    rng = np.random.default_rng(0)
    X = (rng.integers(0, 4, size=(300, 5)).astype(float) if levels
         else rng.normal(size=(300, 5)))
    est = db.estimators.make(name, levels=levels, **FAST).fit(X)
    seen, gen = [], torch.Generator().manual_seed(0)

    def draw(params):
        seen.append(params.clone())
        return est.head_.sample(params, gen)

    with torch.no_grad():
        x = est.module_.sample(200, est.head_.encode, draw, torch.device("cpu"))
        full = est.module_(est.head_.encode(x))
    assert len(seen) == 5
    for i in range(5):
        torch.testing.assert_close(seen[i], full[:, i], rtol=1e-5, atol=1e-5)


def test_mixture_head_samples_follow_its_density():
    """The mixture head's draws against its own CDF (a SciPy normal mixture): KS test."""
    from densbench.estimators.autoregressive import _Head

    head = _Head("gaussian_mixture", None, 3)
    logits, mu, log_s = [0.0, 1.0, -0.5], [-2.0, 0.5, 3.0], [-1.0, 0.0, 0.3]
    params = torch.tensor([logits + mu + log_s]).expand(20_000, -1)
    draws = head.sample(params, torch.Generator().manual_seed(0)).numpy()
    w = np.exp(logits) / np.exp(logits).sum()

    def cdf(t):
        return sum(wk * stats.norm.cdf(t, m, np.exp(ls))
                   for wk, m, ls in zip(w, mu, log_s, strict=True))

    assert stats.kstest(draws, cdf).pvalue > 1e-3
    # and its log-density is the mixture's
    t = torch.linspace(-5, 6, 12)
    got = head.log_prob(params[:12, None, :], t[:, None])[:, 0].double().numpy()
    want = np.log(sum(wk * stats.norm.pdf(t.numpy(), m, np.exp(ls))
                      for wk, m, ls in zip(w, mu, log_s, strict=True)))
    np.testing.assert_allclose(got, want, rtol=1e-5)


# -- refusals and parameters --------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_non_integer_or_out_of_range_levels_are_refused(name):
    ok = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 0.0]])
    for bad, what in ((1.5, "1.5"), (3.0, "3.0"), (-1.0, "-1.0")):
        X = ok.copy()
        X[1, 0] = bad
        with pytest.raises(ValueError, match=rf"^{name}: X must hold integer levels 0\.\.2 "
                                             rf"for categorical conditionals; got {what} in "
                                             r"row 1, column 0"):
            db.estimators.make(name, levels=3, max_epochs=1).fit(X)
        with pytest.raises(ValueError, match=rf"^{name}: X_val must hold integer levels"):
            db.estimators.make(name, levels=3, max_epochs=1).fit(ok, X)
    est = db.estimators.make(name, levels=3, max_epochs=1).fit(ok)
    with pytest.raises(ValueError, match=rf"^{name}: X must hold integer levels 0\.\.2"):
        est.score_samples(np.array([[0.0, 2.5]]))
    with pytest.raises(ValueError, match=rf"^{name}: X must hold integer levels 0\.\.1 "
                                         r"for bernoulli"):
        db.estimators.make(name, levels=2, max_epochs=1).fit(ok)


@pytest.mark.parametrize("params, message", [
    ({"hidden": 0}, "hidden must be an int >= 1; got 0"),
    ({"n_layers": 1.5}, "n_layers must be an int >= 1; got 1.5"),
    ({"n_mixture": True}, "n_mixture must be an int >= 1; got True"),
    ({"conditional": "poisson"}, "conditional must be one of 'auto', 'gaussian_mixture', "
                                 "'bernoulli', 'categorical'; got 'poisson'"),
    ({"levels": 1}, "levels must be None or an int >= 2; got 1"),
    ({"conditional": "bernoulli", "levels": 3}, "levels must be 2 for bernoulli"),
    ({"conditional": "categorical"}, "levels must be an int >= 2 for categorical"),
    ({"conditional": "gaussian_mixture", "levels": 4}, "levels must be None for "
                                                       "gaussian_mixture"),
    ({"lr": 0}, "lr must be a finite float > 0; got 0"),
])
@pytest.mark.parametrize("name", NAMES)
def test_bad_hyperparameters_are_named(name, params, message):
    with pytest.raises(ValueError, match=f"^{name}: {message}"):
        db.estimators.make(name, **params).fit(np.zeros((4, 2)))


@pytest.mark.parametrize("name", NAMES)
def test_conditional_chosen_by_levels_and_discrete_data_not_standardized(name):
    X = _correlated_levels(100, 3, 4)
    est = db.estimators.make(name, levels=4, conditional="categorical", max_epochs=1).fit(X)
    assert est.conditional_ == "categorical" and est.log_jacobian_ == 0.0
    est = db.estimators.make(name, levels=2, conditional="categorical",
                             max_epochs=1).fit((X > 1).astype(float))
    assert est.conditional_ == "categorical"
    assert db.estimators.make(name, max_epochs=1).fit(X).conditional_ == "gaussian_mixture"


def test_made_counts_only_unmasked_weights():
    """d = 3, one hidden layer of 4 units (degrees 1, 2, 1, 2), Bernoulli outputs:
    6 input->hidden weights, 6 hidden->output weights (output 1 sees none, output 2 the
    two degree-1 units, output 3 all four), 4 + 3 biases."""
    X = _correlated_levels(50, 3, 2)
    est = db.estimators.make("made", levels=2, hidden=4, n_layers=1, max_epochs=1).fit(X)
    assert est.n_parameters() == 6 + 6 + 4 + 3


# -- evaluation memory --------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_evaluation_batches_shrink_for_large_rows_and_leave_the_figures_alone(name,
                                                                             monkeypatch):
    # 256 levels on 784 pixels: 4,096 rows of logits would hold ~10 GB; the batch is cut to
    # what fits eval_batch_bytes (a row: 3 float32 copies of 784 x 256)
    cls = db.estimators.get(name)
    big = db.estimators.make(name, levels=256)
    big.n_features_in_ = 784
    big.head_ = _Head("categorical", 256, 10)
    assert big._eval_rows() == cls.eval_batch_bytes // (3 * 4 * 784 * 256) < 200
    # on small data the batch stays whole, and cutting it changes no figure: rows are
    # scored independently (validation after each epoch and scoring alike)
    X = _correlated_levels(600, 6, 5)
    params = dict(FAST, levels=5, max_epochs=3)
    whole = db.estimators.make(name, **params).fit(X[:400], X[400:500])
    assert whole._eval_rows() == cls.eval_batch_size
    monkeypatch.setattr(cls, "eval_batch_bytes", 7 * 3 * 4 * 6 * 5)  # 7 rows a batch
    cut = db.estimators.make(name, **params).fit(X[:400], X[400:500])
    assert cut._eval_rows() == 7
    assert [h["val_loglik"] for h in cut.training_.history] == pytest.approx(
        [h["val_loglik"] for h in whole.training_.history], rel=1e-6)
    np.testing.assert_allclose(cut.score_samples(X[500:]), whole.score_samples(X[500:]),
                               rtol=1e-6)


def test_made_mog_sees_images_dequantized_in_logit_space_not_their_levels():
    """made_mog: MADE's mixture conditionals on the logit pixels (MADE MoG), so on discrete
    data it is scored like the flows, a dequantized bound in the units of the levels, where
    made models the levels themselves."""
    from densbench.data.base import Dataset
    from densbench.data.transforms import FIGURE_DEQUANTIZED, prepare

    cls = db.estimators.get("made_mog")
    assert (cls.logit_space, cls.discrete_native) == (True, False)
    assert db.estimators.get("made").discrete_native
    X = _correlated_levels(600, 4, 8)
    ds = Dataset("levels", 0, X[:400], X[400:500], X[500:], kind="discrete", levels=8)
    assert "levels" not in cls.run_params(ds, seed=0, device="cpu")
    prep = prepare(ds, discrete_native=cls.discrete_native, logit_space=cls.logit_space)
    assert prep.figure == FIGURE_DEQUANTIZED and prep.logit_lambda == 1e-6
    est = db.estimators.make("made_mog", n_mixture=3, **FAST).fit(prep.train, prep.val)
    assert est.conditional_ == "gaussian_mixture"
    bound = prep.to_data_units("test", est.score_samples(prep.test))
    exact = _true_log_prob(X[500:], 8)
    # a lower bound on the exact discrete log-probability, well above uniform levels
    # (-4 log 8 = -8.3 nats) after 15 epochs on 400 rows
    assert exact.mean() - 2.5 < bound.mean() < exact.mean()
    levels = prep.to_data_space(est.sample(50, random_state=0))
    assert set(np.unique(levels)) <= set(range(8))
    with pytest.raises(ValueError, match=r"^made_mog: levels must be None; got 8"):
        db.estimators.make("made_mog", levels=8).fit(prep.train)
