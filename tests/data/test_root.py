"""The data root, published checksums and their cached verdicts."""

import hashlib
import json
from pathlib import Path

import pytest

import densbench as db
from densbench.data import root as R
from densbench.data.sources import SOURCES, FileSpec, Source
from tests.data.formats import write_idx_set


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv(R.ENV_ROOT, str(tmp_path))
    monkeypatch.delenv(R.ENV_VERIFY, raising=False)
    monkeypatch.setattr(R, "_verdicts", {})
    return tmp_path


def test_default_root_is_the_checkouts_datasets_folder(monkeypatch):
    monkeypatch.delenv(R.ENV_ROOT, raising=False)
    checkout = Path(R.__file__).resolve().parents[2]
    assert R.data_root() == checkout / "datasets"


def test_environment_and_set_data_root_override(tmp_path, monkeypatch):
    monkeypatch.setenv(R.ENV_ROOT, str(tmp_path / "a"))
    assert R.data_root() == tmp_path / "a"
    R.set_data_root(tmp_path / "b")
    assert R.data_root() == (tmp_path / "b").resolve()


def test_missing_file_names_file_folder_source_and_checksum(data_root):
    with pytest.raises(R.DataFileError) as err:
        db.data.load("mnist")
    msg = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in msg
    assert f"{data_root}/mnist/train-images-idx3-ubyte.gz: missing" in msg
    assert "https://yann.lecun.com/exdb/mnist/" in msg
    assert "MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873" in msg


def test_published_checksum_refuses_a_file_that_is_not_the_published_one(data_root):
    write_idx_set(data_root / "mnist")  # format-true, but not LeCun's bytes
    with pytest.raises(R.DataFileError, match="wrong MD5 checksum.*expected MD5 f68b3c2d"):
        db.data.load("mnist")


def _one_file_source(data_root: Path, digest: str) -> Source:
    (data_root / "toy").mkdir()
    (data_root / "toy" / "a.bin").write_bytes(b"densbench")
    return Source("toy", "https://example.org/toy", (FileSpec("a.bin", "sha256", digest),))


def test_right_checksum_is_accepted_once_and_the_verdict_cached(data_root, monkeypatch):
    digest = hashlib.sha256(b"densbench").hexdigest()
    monkeypatch.setitem(SOURCES, "toy", _one_file_source(data_root, digest))
    assert R.require("toy") == {"a.bin": data_root / "toy" / "a.bin"}
    cache = json.loads((data_root / ".densbench-checksums.json").read_text())
    assert list(cache.values()) == [True]

    def no_hashing(path, algorithm):
        raise AssertionError("the cached verdict should be used")

    monkeypatch.setattr(R, "file_digest", no_hashing)
    monkeypatch.setattr(R, "_verdicts", {})  # a new process: only the file cache is left
    assert R.require("toy")


def test_a_changed_file_is_checked_again(data_root, monkeypatch):
    digest = hashlib.sha256(b"densbench").hexdigest()
    monkeypatch.setitem(SOURCES, "toy", _one_file_source(data_root, digest))
    R.require("toy")
    (data_root / "toy" / "a.bin").write_bytes(b"densbenc!")  # same size, new mtime
    with pytest.raises(R.DataFileError, match="wrong SHA256 checksum"):
        R.require("toy")


def test_checksums_can_be_turned_off_for_format_true_test_files(data_root, monkeypatch):
    write_idx_set(data_root / "mnist")
    monkeypatch.setenv(R.ENV_VERIFY, "0")
    assert db.data.load("mnist").native("train").shape == (50, 784)
    assert R.require("mnist", verify=False)


def test_folder_status_checks_existence_only(data_root):
    assert R.folder_status("mnist") == "missing"
    write_idx_set(data_root / "mnist")
    assert R.folder_status("mnist") == "present"
    (data_root / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert R.folder_status("mnist") == "missing"


def test_every_declared_file_dataset_has_a_source_and_an_info():
    for name in db.data.names():
        folder = db.data.REGISTRY.meta(name).get("folder")
        if folder:
            assert folder in SOURCES and SOURCES[folder].files
            info = db.data.info(name)
            assert info.name == name and info.protocol["dataset"] == name


def test_a_file_dataset_declares_its_info_function_and_its_folder_once():
    # The info function is named in the declaration (not derived from the loader's name),
    # and a source's folder is the key it is found under.
    declared = {name: db.data.REGISTRY.meta(name) for name in db.data.names()}
    file_based = {name for name, meta in declared.items() if meta.get("folder")}
    assert file_based == set(SOURCES)
    for name in file_based:
        assert declared[name].get("info"), name
        assert SOURCES[name].folder == name
    assert all(not meta.get("info") for name, meta in declared.items()
               if name not in file_based)
