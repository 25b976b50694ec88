"""The UCI and BSDS300 sets of the MAF paper, with exactly its preprocessing and splits.

Papamakarios, Pavlakou & Murray (2017) distribute preprocessed files (the data archive on
Zenodo); their code then applies a last, deterministic preprocessing step per dataset. These
loaders do the same, step for step, so that the figures of
``results/reference/papamakarios2017_*.toml`` compare with densbench's: the split does not
depend on the seed (the paper's split is fixed), only the estimators' training does.

References:
    Papamakarios, Pavlakou & Murray (2017), Masked Autoregressive Flow for Density
    Estimation, NeurIPS (appendix: datasets).
    Uria, Murray & Larochelle (2013), RNADE, NeurIPS (the preprocessing of BSDS300 patches).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from densbench.data.base import Dataset, DatasetInfo
from densbench.data.pickles import ForbiddenPickle, read_frame_pickle
from densbench.data.root import DataFileError, data_file_error, require
from densbench.data.sources import SOURCES

__all__ = ["HEPMASS_LABEL", "uci_bsds300", "uci_bsds300_info", "uci_gas", "uci_gas_info",
           "uci_hepmass", "uci_hepmass_info", "uci_miniboone", "uci_miniboone_info", "uci_power",
           "uci_power_info"]

#: The protocol strings of results/reference/papamakarios2017_*.toml (one place for both).
_SPLIT = "the fixed train/validation/test split of the paper's preprocessed data"
_PREP = "the paper's (Papamakarios et al. 2017, appendix): as distributed with the MAF code"


def _info(name: str, dim: int) -> DatasetInfo:
    """A set's declaration. Its name is also its folder under the data root (the key of its
    :data:`~densbench.data.sources.SOURCES` entry): written once, here; the loaders read it
    from their info."""
    return DatasetInfo(name, dim, "continuous", None, {},
                       {"split": _SPLIT, "preprocessing": _PREP})


def _reading(name: str, path: Path, read: Callable[[Path], Any]) -> Any:
    """``read(path)``, with any failure to parse reported as a :class:`DataFileError`."""
    source = SOURCES[name]
    spec = next(s for s in source.files if s.path == path.name)
    try:
        return read(path)
    except DataFileError:
        raise
    except ForbiddenPickle as exc:
        raise data_file_error(source, spec, f"refused: {exc}") from None
    except Exception as exc:  # numpy, pandas, pickle and h5py raise many kinds
        raise data_file_error(source, spec, f"cannot be read ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _array(name: str, path: Path, X: Any, cols: int | None) -> np.ndarray:
    """``X`` as float64 (n, cols) (any number of columns for ``cols=None``), finite."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or (cols is not None and X.shape[1] != cols) or len(X) < 10:
        spec = next(s for s in SOURCES[name].files if s.path == path.name)
        raise data_file_error(SOURCES[name], spec, f"an array of shape {X.shape}; expected "
                              f"at least 10 rows of {cols or 'some'} columns")
    if not np.isfinite(X).all():
        spec = next(s for s in SOURCES[name].files if s.path == path.name)
        raise data_file_error(SOURCES[name], spec, "contains NaN or infinite values")
    return X


def _tail_splits(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The MAF code's split: the last 10% test, then the last 10% of the rest validation."""
    n_test = int(0.1 * len(X))
    rest, test = X[:-n_test], X[-n_test:]
    n_val = int(0.1 * len(rest))
    return rest[:-n_val], rest[-n_val:], test


def _read_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _standardized(train: np.ndarray, val: np.ndarray, test: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scaled by the mean and (population) standard deviation of train + validation."""
    both = np.vstack((train, val))
    mu, s = both.mean(axis=0), both.std(axis=0)
    return (train - mu) / s, (val - mu) / s, (test - mu) / s


def _dataset(info: DatasetInfo, seed: int, splits: tuple[np.ndarray, ...]) -> Dataset:
    name = info.name
    train, val, test = (np.ascontiguousarray(a, dtype=np.float64) for a in splits)
    if train.shape[1] != info.dim:
        raise DataFileError(f"dataset {name}: the files gave {train.shape[1]} columns after "
                            f"the MAF preprocessing; expected {info.dim} (not the MAF "
                            f"archive's files? {SOURCES[name].note})")
    return Dataset(name=name, seed=seed, train=train, val=val, test=test,
                   protocol_notes=info.protocol_notes, description=name)


def uci_power_info() -> DatasetInfo:
    return _info("uci_power", 6)


def uci_power(seed: int = 0) -> Dataset:
    """UCI individual household electric power consumption, as in the MAF paper (6-D).

    From ``data.npy`` (the archive's 8 columns): shuffled with ``RandomState(42)``; the
    global reactive power and global intensity columns dropped; uniform noise added to the
    remaining columns in the paper's amounts (0.001 x U[0,1) to the active power, 0.01 x to
    the voltage, U[0,1) to the three sub-meterings, none to the time), in the order its
    code draws it; split by :func:`_tail_splits`; standardized by train + validation.
    """
    info = uci_power_info()
    path = require(info.name)["data.npy"]
    data = _array(info.name, path, _reading(info.name, path, _read_npy), 8)
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    n = len(data)
    data = np.delete(np.delete(data, 3, axis=1), 1, axis=1)
    voltage = 0.01 * rng.rand(n, 1)   # drawn in the MAF code's order: voltage, gap, ...
    gap = 0.001 * rng.rand(n, 1)
    sub_metering = rng.rand(n, 3)
    data = data + np.hstack((gap, voltage, sub_metering, np.zeros((n, 1))))
    return _dataset(info, seed, _standardized(*_tail_splits(data)))


def uci_gas_info() -> DatasetInfo:
    return _info("uci_gas", 8)


def uci_gas(seed: int = 0) -> Dataset:
    """UCI gas sensor array (ethylene and CO), as in the MAF paper (8-D).

    From the pandas pickle ``ethylene_CO.pickle`` (written by pandas 0.19 under Python 2;
    read by :func:`~densbench.data.pickles.read_frame_pickle`, which runs nothing the file
    names): the ``Meth``, ``Eth`` and ``Time`` columns dropped; then, while some column
    correlates above 0.98 with another, the first such column dropped; standardized by the
    whole set (pandas' sample standard deviation); the last 10% test, the last 10% of the
    rest validation.
    """
    import pandas as pd

    info = uci_gas_info()
    path = require(info.name)["ethylene_CO.pickle"]
    frame = _reading(info.name, path, read_frame_pickle)
    if not isinstance(frame, pd.DataFrame) or not {"Meth", "Eth", "Time"} <= set(frame):
        raise data_file_error(SOURCES[info.name], SOURCES[info.name].files[0],
                              "not a DataFrame with the columns Meth, Eth and Time")
    frame = frame.drop(columns=["Meth", "Eth", "Time"]).astype(np.float64)
    while True:
        many = (frame.corr() > 0.98).to_numpy().sum(axis=1)
        if not (many > 1).any():
            break
        frame = frame.drop(columns=frame.columns[int(np.flatnonzero(many > 1)[0])])
    frame = (frame - frame.mean()) / frame.std()
    data = _array(info.name, path, frame.to_numpy(), None)
    return _dataset(info, seed, _tail_splits(data))


def uci_hepmass_info() -> DatasetInfo:
    return _info("uci_hepmass", 21)


def _first_value_repeats(column: np.ndarray) -> int:
    """How often the column's smallest value occurs: the MAF code's test for a feature with
    'too many re-occurring values' (it reads the count of the first key in sorted order)."""
    return int(np.count_nonzero(column == column.min()))


#: The class label's column in the HEPMASS files' header (1 signal, 0 background).
HEPMASS_LABEL = "# label"


def _hepmass_features(name: str, train: Any, test: Any) -> tuple[Any, Any]:
    """The signal events' features of the two HEPMASS frames, picked by the header's names:
    the training file's columns but the label; the test file's same-named columns (the
    test file's one more column, the mass, is not among them: the MAF code drops it as the
    last column). A header without a name the loader needs raises :class:`DataFileError`
    naming it."""
    source = SOURCES[name]
    for frame, spec in ((train, source.files[0]), (test, source.files[1])):
        frame.columns = [str(c).strip() for c in frame.columns]
        if HEPMASS_LABEL not in frame.columns:
            raise data_file_error(source, spec, f"no column {HEPMASS_LABEL!r} (the class "
                                  f"label) in its header {list(frame.columns)[:4]}...")
    features = [c for c in train.columns if c != HEPMASS_LABEL]
    absent = [c for c in features if c not in test.columns]
    if absent:
        raise data_file_error(source, source.files[1], f"no column {absent[0]!r} in its "
                              f"header (a feature of {source.files[0].path})")
    return (train.loc[train[HEPMASS_LABEL] == 1, features],
            test.loc[test[HEPMASS_LABEL] == 1, features])


def uci_hepmass(seed: int = 0) -> Dataset:
    """UCI HEPMASS (the "1000" mass files), as in the MAF paper (21-D).

    From ``1000_train.csv`` and ``1000_test.csv``, columns picked by their header's names
    (:func:`_hepmass_features`): only signal events, the training file's features;
    standardized by the training set (pandas' sample standard deviation); features whose
    smallest value occurs more than 5 times in training dropped; the last 10% of training
    validation.
    """
    import pandas as pd

    info = uci_hepmass_info()
    paths = require(info.name)
    train, test = _hepmass_features(info.name, *(
        _reading(info.name, paths[f], lambda p: pd.read_csv(p, index_col=False))
        for f in ("1000_train.csv", "1000_test.csv")))
    mu, s = train.mean(), train.std()
    train = _array(info.name, paths["1000_train.csv"], ((train - mu) / s).to_numpy(), None)
    test = _array(info.name, paths["1000_test.csv"], ((test - mu) / s).to_numpy(), None)
    keep = [j for j in range(train.shape[1]) if _first_value_repeats(train[:, j]) <= 5]
    train, test = train[:, keep], test[:, keep]
    n_val = int(0.1 * len(train))
    return _dataset(info, seed, (train[:-n_val], train[-n_val:], test))


def uci_miniboone_info() -> DatasetInfo:
    return _info("uci_miniboone", 43)


def uci_miniboone(seed: int = 0) -> Dataset:
    """UCI MiniBooNE particle identification, as in the MAF paper (43-D).

    From ``data.npy`` (already cleaned in the archive): the last 10% test, the last 10% of
    the rest validation; standardized by train + validation.
    """
    info = uci_miniboone_info()
    path = require(info.name)["data.npy"]
    data = _array(info.name, path, _reading(info.name, path, _read_npy), 43)
    return _dataset(info, seed, _standardized(*_tail_splits(data)))


def uci_bsds300_info() -> DatasetInfo:
    return _info("uci_bsds300", 63)


def _read_hdf5(path: Path) -> tuple[np.ndarray, ...]:
    import h5py

    with h5py.File(path, "r") as f:
        return tuple(np.asarray(f[k][:]) for k in ("train", "validation", "test"))


def uci_bsds300(seed: int = 0) -> Dataset:
    """8x8 patches of BSDS300 images, as in the MAF paper (63-D).

    The archive's ``BSDS300.hdf5`` holds the train, validation and test patches already
    preprocessed (Uria et al. 2013: monochrome, dequantized, rescaled, the patch mean
    removed and the last pixel dropped); they are used as they are.
    """
    info = uci_bsds300_info()
    path = require(info.name)["BSDS300.hdf5"]
    splits = _reading(info.name, path, _read_hdf5)
    return _dataset(info, seed,
                    tuple(_array(info.name, path, a, 63) for a in splits))

