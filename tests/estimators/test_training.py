"""The shared training loop, on a toy model whose optimum is known in closed form."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from densbench.estimators.training import (
    Evaluation,
    TorchDensityEstimator,
    TrainingError,
    TrainingHooks,
    progress_callback,
    train,
)


class ToyGaussian(TorchDensityEstimator):
    """A learnable diagonal Gaussian (the ML answer is the sample mean and variance)."""

    name = "toy_gaussian"

    training_defaults = TorchDensityEstimator.training_defaults | {
        "max_epochs": 200, "lr": 0.05, "patience": 5}

    def __init__(self, **training):
        self._store_training(training)

    def _build(self, X):
        m = nn.Module()
        m.loc = nn.Parameter(torch.randn(X.shape[1]))
        m.log_scale = nn.Parameter(torch.zeros(X.shape[1]))
        return m

    def _log_prob(self, batch):
        d = torch.distributions.Normal(self.module_.loc, self.module_.log_scale.exp())
        return d.log_prob(batch).sum(-1)

    def _sample_standardized(self, n, generator):
        z = torch.randn(n, self.n_features_in_, generator=generator)
        return self.module_.loc + self.module_.log_scale.exp() * z


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal([3.0, -1.0], [2.0, 0.5], size=(2000, 2))
    V = rng.normal([3.0, -1.0], [2.0, 0.5], size=(500, 2))
    return X, V


def test_learns_the_ml_gaussian_in_data_units(data):
    """Standardization's log-Jacobian is added back: the score equals SciPy's ML Gaussian."""
    from scipy import stats

    X, V = data
    # full-batch Adam without X_val (the training loss selects) converges to the ML answer
    est = ToyGaussian(max_epochs=400, patience=400, batch_size=len(X)).fit(X)
    ref = stats.norm.logpdf(V, X.mean(0), X.std(0)).sum(1)
    assert np.max(np.abs(est.score_samples(V) - ref)) < 0.01
    assert est.training_.stopped in ("max_epochs", "early_stopping")


def test_same_seed_same_weights_and_samples(data):
    X, V = data
    a = ToyGaussian(max_epochs=5, random_state=3).fit(X, V)
    b = ToyGaussian(max_epochs=5, random_state=3).fit(X, V)
    c = ToyGaussian(max_epochs=5, random_state=4).fit(X, V)
    np.testing.assert_array_equal(a.score_samples(V), b.score_samples(V))
    assert not np.array_equal(a.score_samples(V), c.score_samples(V))
    np.testing.assert_array_equal(a.sample(10, random_state=1), b.sample(10, random_state=1))


def test_best_validation_weights_are_restored(data):
    X, V = data
    est = ToyGaussian(max_epochs=40, lr=0.5, patience=3).fit(X, V)
    hist = est.training_.history
    best = max(h["val_loglik"] for h in hist)
    assert est.training_.best_val_loglik == best
    assert hist[est.best_epoch_ - 1]["val_loglik"] == best
    # the restored model scores the validation set at the best epoch's value
    # (in standardized units: subtract the standardization's log-Jacobian)
    got = est.score(V) - est.log_jacobian_
    assert got == pytest.approx(best, abs=1e-4)


def test_nan_loss_stops_with_a_clear_error():
    model = nn.Linear(1, 1)
    X = torch.ones(10, 1)
    before = copy.deepcopy(model.state_dict())
    hooks = TrainingHooks(model, lambda b: model(b).sum() * math.nan, lambda b: b[:, 0],
                          None, lr=0.1)
    with pytest.raises(TrainingError, match=r"^toy: training loss became nan at epoch 1, "
                                            r"batch 0"):
        train(model, hooks, X, who="toy", max_epochs=3, batch_size=5, patience=2,
              time_budget_s=None, seed=0)
    # no update was made from the diverged loss
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_loop_runs_any_step_and_criterion():
    """Hooks replace the update and the criterion; the loop's selection, patience and
    restoring of the best weights are the same for every estimator (the GAN's included)."""

    class Walk(TrainingHooks):
        loss_names = ("a", "b")

        def __init__(self, model, scores):
            self.keep, self.model, self.scores = model, model, iter(scores)

        def step(self, batch, index):
            with torch.no_grad():
                self.model.weight += 1.0  # the weight counts the updates
            return 1.0, 2.0

        def evaluate(self, mean_losses):
            s = next(self.scores)
            return Evaluation(s, {"crit": s})

    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    X = torch.zeros(4, 1)
    res = train(model, Walk(model, [1.0, 3.0, 2.0, 2.5, 0.0]), X, who="w", max_epochs=10,
                batch_size=2, patience=3, time_budget_s=None, seed=0)
    assert res.stopped == "early_stopping" and res.epochs == 5 and res.best_epoch == 2
    assert res.best_val_loglik == 3.0
    assert float(model.weight.detach()) == 4.0  # the weights after epoch 2 (two updates per epoch)
    assert res.history[0] == {"epoch": 1, "a": 1.0, "b": 2.0, "crit": 1.0,
                              "seconds": res.history[0]["seconds"]}


def test_shared_training_hyperparameters_are_declared_once():
    """Every neural estimator takes the shared training hyperparameters through the base
    class: listed by get_params, cloned, and each class's defaults."""
    from sklearn.base import clone

    import densbench as db

    shared = set(TorchDensityEstimator.training_defaults)
    neural = [n for n in db.estimators.names()
              if issubclass(db.estimators.get(n), TorchDensityEstimator)]
    assert {"maf", "vae", "gan", "diffusion", "made"} <= set(neural)
    for name in neural:
        cls = db.estimators.get(name)
        assert shared <= set(cls._get_param_names())
        est = db.estimators.make(name, max_epochs=3, lr=0.5)
        assert est.get_params()["max_epochs"] == 3
        assert clone(est).get_params() == est.get_params()
        assert db.estimators.make(name).max_epochs == cls.training_defaults["max_epochs"]
    assert db.estimators.make("vae").batch_size == 128
    with pytest.raises(TypeError, match="epochs"):
        ToyGaussian(epochs=3)


def test_time_budget_stops_training(data):
    X, V = data
    est = ToyGaussian(max_epochs=100_000, patience=100_000, batch_size=8,
                      time_budget_s=0.2).fit(X, V)
    assert est.stopped_ == "time_budget"
    assert est.training_.seconds < 5


def test_progress_callback_sees_every_epoch(data):
    X, V = data
    events = []
    with progress_callback(events.append):
        est = ToyGaussian(max_epochs=4, patience=10).fit(X, V)
    assert [e["epoch"] for e in events] == [1, 2, 3, 4]
    assert events[0]["who"] == "toy_gaussian" and est.epochs_ == 4


@pytest.mark.parametrize("param, value", [("max_epochs", 0), ("lr", -1.0), ("batch_size", 1.5),
                                          ("time_budget_s", 0), ("device", "tpu")])
def test_bad_common_hyperparameters_are_named(param, value, data):
    with pytest.raises(ValueError, match=f"^toy_gaussian: .*{param}|^toy_gaussian: .*tpu"):
        ToyGaussian(**{param: value}).fit(data[0])


def test_cosine_schedule_matches_pytorchs_cosine_annealing(data):
    """The learning rate of every update against torch.optim.lr_scheduler.CosineAnnealingLR
    (eta_min 0, T_max the updates), which nobody here wrote; then 0 past its end."""
    model = nn.Linear(2, 1)
    batch = torch.as_tensor(data[0][:64], dtype=torch.float32)
    hooks = TrainingHooks(model, lambda b: model(b).pow(2).mean(), lambda b: b[:, 0], None,
                          lr=0.01, cosine_steps=7)
    used = []
    for t in range(9):
        hooks.step(batch, t)
        used.append(hooks.opt.param_groups[0]["lr"])
    ref_model = nn.Linear(2, 1)
    opt = torch.optim.SGD(ref_model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7, eta_min=0.0)
    expected = []
    for _ in range(7):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(used[:7], expected, rtol=1e-12, atol=1e-15)
    assert used[0] == 0.01 and used[7:] == [0.0, 0.0]
    constant = TrainingHooks(model, lambda b: model(b).pow(2).mean(), lambda b: b[:, 0], None,
                             lr=0.01)
    constant.step(batch, 0)
    assert constant.opt.param_groups[0]["lr"] == 0.01


def test_dynamic_binarization_draws_every_epoch_afresh_from_the_means():
    """With ``means`` each minibatch is a new Bernoulli draw of its rows' means: a row
    differs from one epoch to the next, its draws average to its mean, and the seed fixes
    them all."""

    class Record(TrainingHooks):
        def __init__(self, model):
            self.keep, self.model, self.rows = model, model, []

        def step(self, batch, index):
            self.rows.append(batch.clone())
            return (0.0,)

        def evaluate(self, mean_losses):
            return Evaluation(None, {})

    means = torch.tensor([[0.0, 0.25, 0.5, 1.0]]).repeat(400, 1)
    X = torch.bernoulli(means, generator=torch.Generator().manual_seed(9))
    runs = []
    for _ in range(2):
        hooks = Record(nn.Linear(1, 1))
        train(hooks.model, hooks, X, who="w", max_epochs=50, batch_size=100, patience=50,
              time_budget_s=None, seed=3, means=means)
        runs.append(torch.stack(hooks.rows))   # (epochs x batches, 100, 4)
    assert torch.equal(runs[0], runs[1])       # seeded
    draws = runs[0].reshape(-1, 4)
    assert set(draws.unique().tolist()) == {0.0, 1.0} and draws.dtype == X.dtype
    se = (means[0] * (1 - means[0]) / draws.shape[0]).sqrt()
    assert ((draws.mean(0) - means[0]).abs() <= 4 * se + 1e-12).all()
    first, second = runs[0][:4].reshape(-1, 4), runs[0][4:8].reshape(-1, 4)
    assert not torch.equal(first, second)      # epoch 2 is not epoch 1 reshuffled
    assert not torch.equal(first.sort(0).values, X.sort(0).values)


@pytest.mark.parametrize("means, X, match", [
    (np.full((3, 2), 0.5), np.zeros((2, 2)), r"shape of X \(2, 2\); got \(3, 2\)"),
    (np.full((2, 2), 1.5), np.zeros((2, 2)), r"means in \[0, 1\]"),
    (np.full((2, 2), np.nan), np.zeros((2, 2)), r"means in \[0, 1\]"),
    (np.full((2, 2), 0.5), np.full((2, 2), 2.0), "needs binary X"),
    (np.zeros((2, 2)), np.ones((2, 2)), "X is not a draw of binarize_from"),
])
def test_bad_binarize_from_is_named(means, X, match):
    with pytest.raises(ValueError, match="^vae: binarize_from|^vae: X is not"):
        from densbench import estimators
        estimators.make("vae", decoder="bernoulli", levels=2, max_epochs=1,
                        latent_dim=2, hidden=8).fit(X, binarize_from=means)
    with pytest.raises(ValueError, match=match):
        from densbench.estimators.training import checked_means
        checked_means(means, X, "vae")


def test_binarize_from_needs_a_model_of_the_binary_levels(data):
    X = (np.random.default_rng(0).random((50, 2)) < 0.5).astype(float)
    with pytest.raises(ValueError, match="toy_gaussian: binarize_from needs a model of the "
                       "binary levels"):
        ToyGaussian(max_epochs=1).fit(X, binarize_from=np.full(X.shape, 0.5))
