"""GAN: an implicit model. score_samples raises a clear error; sampling is seeded; a short
training matches the mean and covariance of a 2-D Gaussian (an untrained generator does
not); a runner cell records sample metrics and no likelihood metrics; the report shows
"-- (implicit)" for its likelihood figures and `densbench compare` handles it."""

from __future__ import annotations

import numpy as np
import pytest

import densbench as db
from densbench.cli import main
from densbench.estimators.base import NoLikelihoodError
from densbench.report.render import write_report
from densbench.report.tables import IMPLICIT, leaderboards
from densbench.runner.execute import run_cells
from densbench.runner.plan import Cell, Spec
from densbench.runner.store import RunStore, load

MEAN = np.array([2.0, -1.0])
COV = np.array([[1.0, 0.6], [0.6, 0.5]])
SMALL = {"n_train": 500, "n_val": 100, "n_test": 300}
FAST = {"hidden": 32, "max_epochs": 4}


@pytest.fixture(scope="module")
def gaussian_data():
    rng = np.random.default_rng(0)
    return (rng.multivariate_normal(MEAN, COV, size=2000),
            rng.multivariate_normal(MEAN, COV, size=500))


@pytest.fixture(scope="module")
def trained(gaussian_data):
    X, X_val = gaussian_data
    return db.estimators.make("gan", hidden=32, latent_dim=2, max_epochs=30, batch_size=128,
                              lr=1e-3, patience=30, random_state=0).fit(X, X_val)


def _moment_errors(x: np.ndarray) -> tuple[float, float]:
    return (float(np.abs(x.mean(0) - MEAN).max()),
            float(np.abs(np.cov(x.T) - COV).max()))


def test_score_samples_raises_naming_the_estimator(trained, gaussian_data):
    with pytest.raises(NoLikelihoodError, match="^gan: an implicit model has no likelihood"):
        trained.score_samples(gaussian_data[1])
    with pytest.raises(NotImplementedError):  # the class is a NotImplementedError
        trained.score(gaussian_data[1])


def test_trained_generator_matches_mean_and_covariance(trained, gaussian_data):
    X, X_val = gaussian_data
    mean_err, cov_err = _moment_errors(trained.sample(4000, random_state=1))
    assert mean_err < 0.15 and cov_err < 0.2
    # the same check fails for the untrained generator (same seed, one step at lr ~ 0)
    untrained = db.estimators.make("gan", hidden=32, latent_dim=2, max_epochs=1, lr=1e-12,
                                   random_state=0).fit(X)
    mean_err0, cov_err0 = _moment_errors(untrained.sample(4000, random_state=1))
    assert mean_err0 > 0.15 or cov_err0 > 0.2
    assert trained.training_.best_val_energy_distance is not None
    assert trained.n_parameters() == sum(
        p.numel() for p in trained.module_.generator.parameters())


def test_sampling_is_seeded(trained):
    a = trained.sample(50, random_state=3)
    np.testing.assert_array_equal(a, trained.sample(50, random_state=3))
    assert not np.array_equal(a, trained.sample(50, random_state=4))


def test_same_seed_same_generator(gaussian_data):
    X, X_val = gaussian_data
    a, b = (db.estimators.make("gan", random_state=5, **FAST).fit(X, X_val) for _ in range(2))
    np.testing.assert_array_equal(a.sample(20, random_state=0), b.sample(20, random_state=0))


@pytest.mark.parametrize(("param", "value", "message"), [
    ("r1_gamma", -1.0, "gan: r1_gamma must be a finite float >= 0; got -1.0"),
    ("latent_dim", 0, "gan: latent_dim must be an int >= 1; got 0"),
])
def test_bad_hyperparameters_are_named(param, value, message, gaussian_data):
    with pytest.raises(ValueError, match="^" + message):
        db.estimators.make("gan", **{param: value}).fit(gaussian_data[0])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan_run")
    cells = [Cell(Spec(e, p), Spec("banana", SMALL), 0)
             for e, p in (("gan", FAST), ("gaussian", {}))]
    summary = run_cells(cells, RunStore(root, create=True))
    assert summary.ok == 2, [r.get("error") for r in summary.failed]
    return root


def test_runner_records_sample_metrics_and_no_likelihood(run):
    rec = next(r for r in RunStore(run).records() if r["estimator"]["name"] == "gan")
    assert rec["likelihood_kind"] == "none" and rec["figure"] is None
    metrics = {m["metric"] for m in rec["metrics"]}
    assert not {m for m in metrics if "loglik" in m and m != "samples_truth_loglik"
                and m != "test_loglik_truth"}
    assert not {"kl_to_truth", "test_bits_per_dim", "score_examples_per_s"} & metrics
    for key in ("samples_mmd2", "samples_energy_distance", "samples_c2st_accuracy",
                "samples_truth_loglik", "floor_c2st_accuracy", "fit_seconds",
                "sample_examples_per_s"):
        assert key in metrics, key
    assert "per_example" not in rec and "density_grid" not in rec


def test_report_shows_implicit_instead_of_a_number(run):
    board = leaderboards(load(run))["banana"]
    assert board.loc["gan", "likelihood"] == "none (implicit)"
    assert board.loc["gan", "test log-lik [nats/example]"] == IMPLICIT
    assert board.loc["gan", "KL to truth [nats]"] == IMPLICIT
    assert board.index[-1] == "gan"  # ranked after the models with a likelihood
    assert IMPLICIT not in board.loc["gaussian"].tolist()
    text = write_report(run, ("md",))[0].read_text()
    assert "| gan | none (implicit) | -- (implicit) |" in text


def test_compare_handles_an_implicit_model(run, capsys):
    assert main(["compare", str(run), str(run)]) == 0
    assert "0 significantly worse" in capsys.readouterr().out
