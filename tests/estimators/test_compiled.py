"""Compiled training (densbench.estimators.compiled): the same model as eager training up to
floating-point order, its cost counted apart, a cache on disk, a fallback to eager."""

import os

import numpy as np
import pytest
import torch

import densbench as db
from densbench.estimators import compiled
from densbench.estimators.compiled import CompiledStep, cache_dir, compile_cache

# 500 training rows in minibatches of 100: one batch shape, one compilation
TINY = {"transforms": 1, "hidden": [8], "max_epochs": 3, "batch_size": 100}


@pytest.fixture
def data():
    X = np.random.default_rng(0).normal(size=(700, 3)) @ np.array(
        [[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    return X[:500], X[500:]


def test_the_cache_folder_is_the_users_choice_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv(compiled.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "densbench" / "torch-compile"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "densbench" / "torch-compile"
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path / "own"))
    assert cache_dir() == tmp_path / "own"


def test_inductor_caches_in_densbenchs_folder_unless_the_user_chose_one(monkeypatch, tmp_path):
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path / "db"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    with compile_cache() as folder:
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "db") == str(folder)
        assert folder.is_dir()
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ  # nothing left behind
    # PyTorch writes its default there when torch._dynamo is imported: not the user's
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    with compile_cache() as folder:
        assert folder == tmp_path / "db"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == default_cache_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    with compile_cache() as folder:
        assert folder == tmp_path / "mine"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_inductor_trains_the_same_model_counts_its_cost_apart_and_caches_it(
        data, monkeypatch, tmp_path):
    # the one test that runs the real compiler (some 20-30 s on a CPU core, cold)
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(compiled.BACKEND_ENV, raising=False)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    X, V = data
    eager = db.estimators.make("maf", **TINY).fit(X, V)
    fast = db.estimators.make("maf", compile=True, **TINY).fit(X, V)
    assert fast.training_.compile_fallback is None
    assert fast.compile_seconds_ > 0 and eager.compile_seconds_ == 0
    # the same training up to floating-point order: every epoch's losses and the scores
    for a, b in zip(eager.training_.history, fast.training_.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    np.testing.assert_allclose(fast.score_samples(V), eager.score_samples(V), rtol=1e-4)
    # compiled code on disk, for the run's other workers and later runs
    assert any((tmp_path / "cache").rglob("*.py"))
    # a new model of the same architecture in this process compiles nothing again
    again = db.estimators.make("maf", compile=True, **{**TINY, "random_state": 1}).fit(X, V)
    assert again.training_.compile_fallback is None
    assert again.compile_seconds_ < fast.compile_seconds_ / 5


def test_the_time_budget_and_the_training_seconds_leave_compilation_out(data, monkeypatch):
    import time

    def slow_backend(gm, example_inputs):  # a compiler that takes 1 s per graph
        time.sleep(1.0)
        return gm.forward

    X, V = data
    monkeypatch.setattr(compiled, "_backend", lambda: slow_backend)
    est = db.estimators.make("maf", compile=True, time_budget_s=0.5, **TINY).fit(X, V)
    assert est.training_.compile_fallback is None
    assert est.compile_seconds_ >= 1.0
    # three short epochs, not cut by a budget the compilation alone would have spent
    assert est.epochs_ == 3 and est.stopped_ != "time_budget"
    assert est.training_.seconds < est.compile_seconds_
    assert est.training_.history[-1]["seconds"] == pytest.approx(est.training_.seconds,
                                                                 abs=0.5)


def test_an_estimator_with_a_training_of_its_own_refuses_compile(data):
    X, V = data
    assert not db.estimators.get("gan").compilable
    with pytest.raises(ValueError, match="gan: compile=True is not supported"):
        db.estimators.make("gan", compile=True, max_epochs=1).fit(X, V)


def test_compile_is_a_hyperparameter_checked_like_the_others(data):
    with pytest.raises(ValueError, match="compile"):
        db.estimators.make("maf", compile="yes").fit(data[0])
    assert db.estimators.make("nsf").get_params()["compile"] is False


def test_the_compiled_step_counts_only_steps_that_compiled():
    w = torch.ones(3, requires_grad=True)
    step = CompiledStep(lambda x: (w * x).sum(), backend="eager")

    def work(loss):
        w.grad = None
        loss(torch.arange(3.0)).backward()
        return float(w.grad.sum())

    assert step.run(work) == 3.0
    first, graphs = step.seconds, step.graphs
    assert first > 0 and graphs >= 1
    for _ in range(3):
        assert step.run(work) == 3.0
    assert (step.seconds, step.graphs) == (first, graphs)  # nothing compiled again


def test_a_process_that_fits_many_models_compiles_each_of_them(data, monkeypatch):
    # TorchDynamo gives up compiling a function after 8 sets of guards, silently; a worker
    # fits model after model through the same loss function
    monkeypatch.setenv(compiled.BACKEND_ENV, "eager")
    X, V = data
    with torch._dynamo.config.patch(recompile_limit=2):  # 8 would make a slower test
        for transforms in range(1, 5):  # 4 architectures: a set of guards each, at least
            est = db.estimators.make("maf", compile=True, **{
                **TINY, "transforms": transforms, "max_epochs": 1}).fit(X, V)
            assert est.compile_seconds_ > 0, transforms
        # the seeds of one setting reuse what the process compiled
        again = db.estimators.make("maf", compile=True, **{
            **TINY, "transforms": 4, "max_epochs": 1, "random_state": 3})
        assert again.fit(X, V).compile_seconds_ == 0


def _failing_backend(gm, example_inputs):
    raise RuntimeError("no C++ compiler here")


def _skewed_backend(gm, example_inputs):
    """A compiler that gets the numbers wrong: every graph's outputs 1.5 times too large."""

    def run(*args):
        out = gm(*args)
        return type(out)(o * 1.5 if isinstance(o, torch.Tensor) and o.is_floating_point()
                         else o for o in out)

    return run


@pytest.mark.parametrize(("backend", "why"), [
    (_failing_backend, "no C++ compiler here"),
    (_skewed_backend, "gradients differ from eager PyTorch's")], ids=["fails", "wrong"])
def test_a_compiler_that_fails_or_gets_the_gradients_wrong_is_not_used(
        data, monkeypatch, backend, why):
    X, V = data
    monkeypatch.setattr(compiled, "_backend", lambda: backend)
    eager = db.estimators.make("maf", **TINY).fit(X, V)
    fell = db.estimators.make("maf", compile=True, **TINY).fit(X, V)
    assert why in fell.training_.compile_fallback
    # the eager step's gradients stood, and every step after was eager: the same model
    np.testing.assert_array_equal(fell.score_samples(V), eager.score_samples(V))
