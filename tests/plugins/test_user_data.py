"""A user's own data: files of every format, splits, known densities, loaders by spec."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

import densbench as db
from densbench.data.root import DataFileError
from densbench.runner.plan import Cell, Spec, SuiteError, parse_suite

X = np.random.default_rng(0).normal(size=(200, 3))

TRUTH = '''
import numpy as np

def log_prob(X):
    return -0.5 * (X ** 2).sum(1) - 0.5 * X.shape[1] * np.log(2 * np.pi)

def loader(seed=0, n=100):
    return np.random.default_rng(seed).normal(size=(n, 2))
'''


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", X)
    pd.DataFrame(X, columns=["a", "b", "c"]).to_csv("x.csv", index=False)
    pd.DataFrame(X, columns=["a", "b", "c"]).to_parquet("x.parquet")
    np.savez("x.npz", train=X[:150], val=X[150:170], test=X[170:])
    np.savez("one.npz", data=X)
    np.save("val.npy", X[:20])
    np.save("test.npy", X[20:50])
    (tmp_path / "truth.py").write_text(TRUTH)
    return tmp_path


def test_formats_give_the_same_split(files):
    ref = db.data.load("x.npy", seed=1)
    assert (ref.train.shape, ref.val.shape, ref.test.shape) == ((160, 3), (20, 3), (20, 3))
    assert np.array_equal(np.sort(np.vstack([ref.train, ref.val, ref.test]), 0), np.sort(X, 0))
    for name in ("x.csv", "x.parquet", "one.npz"):
        ds = db.data.load(name, seed=1)
        for split in ("train", "val", "test"):
            np.testing.assert_array_equal(getattr(ds, split), getattr(ref, split))
    assert not np.array_equal(db.data.load("x.npy", seed=2).test, ref.test)


def test_explicit_splits_and_fractions(files):
    ds = db.data.load("x.npz")  # the archive's train/val/test arrays
    np.testing.assert_array_equal(ds.test, X[170:])
    ds = db.data.load("x.npy", val="val.npy", test="test.npy")
    np.testing.assert_array_equal(ds.train, X)
    np.testing.assert_array_equal(ds.val, X[:20])
    assert len(db.data.load("x.npy", split=[0.5, 0.25, 0.25]).train) == 100


def test_discrete_and_known_density(files):
    np.save("levels.npy", np.random.default_rng(0).integers(0, 4, size=(100, 5)))
    ds = db.data.load("levels.npy", kind="discrete")
    assert ds.kind == "discrete" and ds.levels == 4
    ds = db.data.load("x.npy", log_prob="truth.py:log_prob")
    np.testing.assert_allclose(ds.log_prob(ds.test),
                               multivariate_normal(np.zeros(3)).logpdf(ds.test), rtol=1e-12)


def test_function_loader(files, monkeypatch):
    monkeypatch.syspath_prepend(str(files))
    ds = db.data.load("truth:loader", seed=3, n=50)
    assert ds.dim == 2 and len(ds.train) + len(ds.val) + len(ds.test) == 50
    np.testing.assert_array_equal(db.data.load("truth.py:loader", seed=3, n=50).test, ds.test)


@pytest.mark.parametrize("name, params, message", [
    ("missing.npy", {}, r"no such file"),
    ("x.npy", {"split": [0.5, 0.5, 0.5]}, r"split must be 3 fractions"),
    ("x.npy", {"kind": "ordinal"}, r"kind must be 'continuous' or 'discrete'"),
    ("x.npy", {"kind": "discrete"}, r"discrete data must be integers"),
    ("one.npz", {"train": "nope", "val": "v", "test": "t"}, r"no array nope, v, t"),
    ("x.npy", {"val": "val.npy"}, r"give both val and test"),
])
def test_bad_input_is_one_clear_error(files, name, params, message):
    with pytest.raises(ValueError, match=message):
        db.data.load(name, **params)


def test_nan_and_text_refused(files):
    bad = X.copy()
    bad[3, 1] = np.nan
    np.save("nan.npy", bad)
    with pytest.raises(DataFileError, match=r"1 non-finite value\(s\).*row 3"):
        db.data.load("nan.npy")
    (files / "text.csv").write_text("a,b\n1,x\n2,y\n")
    with pytest.raises(DataFileError, match=r"non-numeric column\(s\) b"):
        db.data.load("text.csv")


def test_cell_id_follows_the_content(files):
    cell = Cell(Spec("gaussian"), Spec("x.npy"), 0)
    assert cell.dataset.name == str(files / "x.npy")
    first = cell.id
    assert cell.to_dict()["dataset"]["sha256"] == db.data.fingerprint(cell.dataset.name, {})
    np.save("x.npy", X + 1.0)
    assert Cell(Spec("gaussian"), Spec("x.npy"), 0).id != first


def test_suite_validates_file_datasets(files):
    with pytest.raises(SuiteError, match=r"datasets\[0\].*split must be"):
        parse_suite('[[estimators]]\nname = "gaussian"\n[[datasets]]\nname = "x.npy"\n'
                    '[datasets.params]\nsplit = [1, 1, 1]\n', "s.toml")
