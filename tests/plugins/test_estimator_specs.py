"""Estimators from outside the package: specs, files, entry points and ``register``."""

from __future__ import annotations

import os
import re
import sys
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


WITHOUT_SAMPLER = MODEL.replace("    def _sample(self, n, rng):\n        return self.mean_ + "
                                "np.sqrt(self.var_) * rng.standard_normal((n, self.mean_.size))"
                                "\n\n", "") + '''

class Column(Iso):
    """Scores as a column (n, 1)."""

    def _score_samples(self, X):
        return super()._score_samples(X)[:, None]


class Wider(Iso):
    """Samples one column too many."""

    def _sample(self, n, rng):
        return rng.standard_normal((n, self.mean_.size + 1))
'''


@pytest.fixture
def odd_models(tmp_path, monkeypatch):
    (tmp_path / "odd.py").write_text(textwrap.dedent(WITHOUT_SAMPLER))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "odd.py"


def test_a_wrong_output_shape_names_the_estimator_the_method_and_both_shapes(odd_models):
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match=r"^odd.py:Column: _score_samples returned shape "
                                         r"\(50, 1\); expected \(50,\): one log-density"):
        db.estimators.make("odd.py:Column").fit(X).score_samples(X)
    with pytest.raises(ValueError, match=r"^odd.py:Wider: _sample returned shape \(7, 3\); "
                                         r"expected \(7, 2\)"):
        db.estimators.make("odd.py:Wider").fit(X).sample(7)


def test_a_model_without_a_sampler_keeps_its_likelihoods(odd_models):
    """can_sample is inferred (no _sample of its own: False; a subclass with one: True);
    the cell records the likelihoods and says why it drew no samples. A class that says it
    samples but whose sampler is not implemented for its settings (scikit-learn's
    exponential KernelDensity) is noted the same way."""
    from densbench.runner.cell import run_cell
    from densbench.runner.plan import Cell, Spec

    assert db.estimators.get("odd.py:Iso").can_sample is False
    assert db.estimators.get("odd.py:Wider").can_sample is True
    data = Spec("banana", {"n_train": 200, "n_val": 60, "n_test": 60})
    for spec, note in (
            (Spec("odd.py:Iso"), r"no samples: .*odd.py:Iso: this estimator cannot sample "
                                 r"\(its class implements no _sample\)$"),
            (Spec("sklearn.neighbors:KernelDensity", {"kernel": "exponential"}),
             r"no samples: sklearn.neighbors:KernelDensity: KernelDensity.sample is not "
             r"implemented for these settings$")):
        rec = run_cell(Cell(spec, data, 0))
        assert rec["status"] == "ok", rec.get("traceback")
        names = {m["metric"] for m in rec["metrics"]}
        assert {"test_loglik", "val_loglik"} <= names
        assert not any(n.startswith("samples_") for n in names)
        assert re.match(note, rec["samples_note"]), rec["samples_note"]


def test_a_file_imports_the_module_beside_it(tmp_path, monkeypatch):
    """``path/to/file.py:Class`` whose file does ``from helper import ...``: the helper
    beside it is found (the file's folder is on sys.path, as for a script)."""
    (tmp_path / "sibling_helper_27.py").write_text("def spread(X):\n    return X.var()\n")
    (tmp_path / "withhelper.py").write_text(textwrap.dedent(MODEL).replace(
        "import numpy as np\n", "import numpy as np\nfrom sibling_helper_27 import spread\n"
    ).replace("X.var()", "spread(X)"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # the folder added is taken out after
    X = np.random.default_rng(0).normal(size=(100, 2))
    try:
        est = db.estimators.make(f"{tmp_path}/withhelper.py:Iso").fit(X)
    finally:
        sys.modules.pop("sibling_helper_27", None)
    assert est.var_ == X.var()
