"""Estimators from outside the package: specs, files, entry points and ``register``."""

from __future__ import annotations

import os
import textwrap
from importlib.metadata import EntryPoint

import numpy as np
import pytest

import densbench as db
from densbench import registry
from densbench.registry import PluginError, UnknownNameError
from densbench.runner.plan import Spec, SuiteError, parse_suite

MODEL = '''
import numpy as np
from densbench.estimators.base import DensityEstimator


class Iso(DensityEstimator):
    """An isotropic Gaussian (a user's model: no __init__, no registry line)."""

    def _fit(self, X, X_val):
        self.mean_, self.var_ = X.mean(0), X.var()

    def _score_samples(self, X):
        d = X.shape[1]
        return -0.5 * (((X - self.mean_) ** 2).sum(1) / self.var_
                       + d * np.log(2 * np.pi * self.var_))

    def _sample(self, n, rng):
        return self.mean_ + np.sqrt(self.var_) * rng.standard_normal((n, self.mean_.size))

    def _n_parameters(self):
        return self.mean_.size + 1
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "usermodel.py"
    path.write_text(textwrap.dedent(MODEL))
    return path


def test_file_spec_fits_and_matches_scipy(model_file, monkeypatch):
    from scipy.stats import multivariate_normal

    monkeypatch.chdir(model_file.parent)
    est = db.estimators.make("usermodel.py:Iso", random_state=0)
    X = np.random.default_rng(0).normal(size=(200, 2))
    est.fit(X)
    ref = multivariate_normal(X.mean(0), X.var() * np.eye(2)).logpdf(X[:5])
    np.testing.assert_allclose(est.score_samples(X[:5]), ref, rtol=1e-12)
    assert type(est).name == "usermodel.py:Iso"
    with pytest.raises(ValueError, match=r"usermodel.py:Iso: X contains 1 non-finite"):
        est.score_samples(np.array([[np.nan, 0.0]]))


def test_spec_in_a_suite_is_made_absolute(model_file, monkeypatch):
    monkeypatch.chdir(model_file.parent)
    suite = parse_suite('[[estimators]]\nname = "usermodel.py:Iso"\n'
                        '[[datasets]]\nname = "banana"\n', "s.toml")
    name = suite.cells()[0].estimator.name
    assert name == f"{model_file}:Iso" and os.path.isabs(name.rpartition(":")[0])
    assert Spec("kde").name == "kde"


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:Model", r"cannot import no_such_module_xyz \(ModuleNotFoundError"),
    ("numpy:NoSuchClass", r"module 'numpy' has no attribute 'NoSuchClass'"),
    ("missing_file.py:Model", r"no such file \S*missing_file.py"),
    ("pathlib:PurePath", r"no fit, score_samples"),
])
def test_bad_spec_is_one_clear_error_before_anything_runs(spec, message):
    with pytest.raises(PluginError, match=message):
        db.estimators.get(spec)
    with pytest.raises(SuiteError, match=message):
        parse_suite(f'[[estimators]]\nname = "{spec}"\n[[datasets]]\nname = "banana"\n',
                    "s.toml")


def test_unknown_plain_name_lists_known_and_the_spec_forms():
    with pytest.raises(UnknownNameError, match=r"known: .*kde.*'package.module:Class'"):
        db.estimators.get("no_such_estimator")


def test_entry_point_plugin(monkeypatch):
    ep = EntryPoint("ep_gauss", "densbench.estimators.gaussian:DiagGaussian",
                    "densbench.estimators")

    def fake(group=None):
        return [ep] if group == "densbench.estimators" else []

    monkeypatch.setattr(registry, "entry_points", fake)
    assert "ep_gauss" in db.estimators.names()
    est = db.estimators.make("ep_gauss")
    assert type(est).__name__ == "DiagGaussian"


def test_register_for_interactive_use():
    from densbench.estimators.gaussian import Gaussian

    class Mine(Gaussian):
        """Mine."""

    db.estimators.register("test_register_mine", Mine)
    assert Mine.name == "test_register_mine"
    assert isinstance(db.estimators.make("test_register_mine"), Mine)
    with pytest.raises(ValueError, match="registered twice"):
        db.estimators.register("test_register_mine", Mine)
    with pytest.raises(PluginError, match="is not an estimator: a densbench"):
        db.estimators.register("test_register_int", int)
