"""A user's own data: files of every format, splits, known densities, loaders by spec."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

import densbench as db
from densbench.data.root import DataFileError
from densbench.report.compare import compare_runs
from densbench.report.tables import aggregate_seeds
from densbench.runner.cell import run_cell
from densbench.runner.plan import Cell, Spec, SuiteError, parse_suite
from densbench.runner.store import RunStore

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


def _rows(ds):
    return len(ds.train) + len(ds.val) + len(ds.test)


def test_a_csv_without_a_header_keeps_its_first_row(files):
    np.savetxt("plain.csv", X, delimiter=",")  # numbers from the first line on
    pd.DataFrame(X).to_csv("unnamed.csv", index=False)  # pandas' header "0,1,2"
    for name in ("plain.csv", "unnamed.csv", "x.csv"):
        ds = db.data.load(name, seed=1)
        assert _rows(ds) == 200 and ds.dim == 3, name
        np.testing.assert_allclose(ds.test, db.data.load("x.npy", seed=1).test, rtol=1e-15)
    assert _rows(db.data.load("unnamed.csv", header=False)) == 201  # told: "0,1,2" is data
    assert _rows(db.data.load("plain.csv", header=True)) == 199
    pd.DataFrame(X).to_csv("indexed.csv")  # the row labels as an unnamed first column
    with pytest.raises(DataFileError, match=r"indexed.csv's first column has no name"):
        db.data.load("indexed.csv")
    with pytest.raises(ValueError, match=r"header must be true or false, for a .csv"):
        db.data.load("x.npy", header=True)


@pytest.mark.parametrize("array, message", [
    (X.astype(np.complex128) + 1j, r"has dtype complex128: complex numbers.*real and imag"),
    (X[:, 0], r"is 1-D \(shape \(200,\)\).*reshape to \(200, 1\) for one feature"),
    (np.zeros(5, dtype=[("a", float), ("b", float)]),
     r"has dtype \[\('a', '<f8'\), \('b', '<f8'\)\]: a structured array with fields a, b"),
])
def test_arrays_that_would_lose_information_are_refused_by_name(files, array, message):
    np.save("lossy.npy", array)
    with pytest.raises(DataFileError, match=r"dataset lossy.npy: the data " + message):
        db.data.load("lossy.npy")
    np.savez("lossy.npz", train=array, val=array, test=array)
    with pytest.raises(DataFileError, match=r"array train " + message):
        db.data.load("lossy.npz")


def test_object_arrays_are_refused_by_name(files, monkeypatch):
    np.save("objects.npy", np.array([[1.0, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(DataFileError, match=r"objects.npy.*Object arrays cannot be loaded"):
        db.data.load("objects.npy")
    (files / "objs.py").write_text("import numpy as np\n\ndef load():\n"
                                   "    return np.ones((30, 2), dtype=object)\n")
    monkeypatch.syspath_prepend(str(files))
    with pytest.raises(DataFileError, match=r"objs:load.*has dtype object: Python objects"):
        db.data.load("objs:load")


def test_cell_id_follows_the_content_when_the_modification_time_is_restored(files):
    old = (1_600_000_000, 1_600_000_000)  # cp -p, rsync -t, tar: the source's times kept
    os.utime("x.npy", old)
    first = Cell(Spec("gaussian"), Spec("x.npy"), 0).id
    assert Cell(Spec("gaussian"), Spec("x.npy"), 0).id == first
    np.save("x.npy", X + 1.0)  # the same size
    os.utime("x.npy", old)
    assert Cell(Spec("gaussian"), Spec("x.npy"), 0).id != first


def test_a_changed_file_is_a_new_configuration_never_a_second_seed(files):
    runs = [RunStore(files / name, create=True) for name in ("old", "both", "new")]
    recs = []
    for content in (X, 3.0 + 2.0 * X):
        np.save("x.npy", content)
        recs.append(run_cell(Cell(Spec("diag_gaussian"), Spec("x.npy"), 0,
                                  sample_metrics=False)))
        assert recs[-1]["status"] == "ok", recs[-1].get("error")
    runs[0].write(recs[0])
    runs[1].write(recs[0])
    runs[1].write(recs[1])  # the same run folder, re-run after the file changed
    runs[2].write(recs[1])
    assert recs[0]["id"] != recs[1]["id"]
    table = aggregate_seeds(db.results.load(runs[1].root))
    table = table[table["metric"] == "test_loglik"]
    assert sorted(table["n_seeds"]) == [1, 1] and table["dataset"].nunique() == 2
    want = sorted(next(m["value"] for m in r["metrics"] if m["metric"] == "test_loglik")
                  for r in recs)
    assert sorted(table["mean"]) == want  # each content's own figure, never their mean
    assert len(compare_runs(runs[0].root, runs[2].root)) == 0  # other data: no pairs


def test_suite_validates_file_datasets(files):
    with pytest.raises(SuiteError, match=r"datasets\[0\].*split must be"):
        parse_suite('[[estimators]]\nname = "gaussian"\n[[datasets]]\nname = "x.npy"\n'
                    '[datasets.params]\nsplit = [1, 1, 1]\n', "s.toml")
