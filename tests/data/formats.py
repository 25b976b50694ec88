"""Small files in the exact formats the sources distribute (for the loaders' tests and the
end-to-end run of the published-protocol suite). Every writer returns the arrays it wrote."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

__all__ = ["write_all", "write_amat", "write_bsds300", "write_cifar10", "write_gas",
           "write_hepmass", "write_idx", "write_idx_set", "write_miniboone", "write_power"]


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes, gzip-compressed (LeCun's format)."""
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I",
                                                                  *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_idx_set(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {"train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
           "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
           "test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
           "test_y": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for name, key in (("train-images-idx3-ubyte.gz", "train"),
                      ("train-labels-idx1-ubyte.gz", "train_y"),
                      ("t10k-images-idx3-ubyte.gz", "test"),
                      ("t10k-labels-idx1-ubyte.gz", "test_y")):
        write_idx(folder / name, out[key])
    return out


def write_amat(folder: Path, rows: tuple[int, int, int] = (30, 10, 10), seed: int = 0) -> dict:
    """The three ``.amat`` files: one image per line, 784 space-separated 0/1 values."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in zip(("train", "valid", "test"), rows, strict=True):
        X = rng.integers(0, 2, (n, 784), dtype=np.uint8)
        (folder / f"binarized_mnist_{split}.amat").write_text(
            "".join(" ".join(map(str, row)) + " \n" for row in X))
        out[split] = X
    return out


def write_cifar10(folder: Path, per_batch: int = 20, seed: int = 0) -> dict:
    """Five training batches and a test batch: pickled dicts with bytes keys, ``data`` uint8
    (n, 3072) in channel-major order (1024 red, 1024 green, 1024 blue)."""
    rng = np.random.default_rng(seed)
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(base / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, f, protocol=2)
        out[name] = data
    return out


def write_power(folder: Path, n: int = 400, seed: int = 0) -> np.ndarray:
    """``data.npy``: 8 columns (active power, reactive power, voltage, intensity, three
    sub-meterings, time)."""
    X = np.random.default_rng(seed).normal(size=(n, 8)) * [1, 0.1, 5, 3, 1, 1, 1, 100]
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "data.npy", X)
    return X


def write_gas(folder: Path, n: int = 300, seed: int = 0):
    """``ethylene_CO.pickle``: a pandas DataFrame with Meth, Eth, Time and 16 sensors, of
    which 8 are near-copies of others (dropped by the correlation rule)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 8))
    copies = base + 1e-3 * rng.normal(size=(n, 8))
    cols = {"Time": np.arange(n, dtype=float), "Meth": rng.random(n), "Eth": rng.random(n)}
    for j in range(8):
        cols[f"copy{j}"] = copies[:, j]
        cols[f"sensor{j}"] = base[:, j]
    frame = pd.DataFrame(cols)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_pickle(folder / "ethylene_CO.pickle")
    return frame


def write_hepmass(folder: Path, n_train: int = 300, n_test: int = 120, seed: int = 0):
    """``1000_train.csv`` (label + 27 features) and ``1000_test.csv`` (label + 27 features +
    one extra column, as in the archive); 6 features repeat their smallest value often."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for name, n, extra in (("1000_train.csv", n_train, 0), ("1000_test.csv", n_test, 1)):
        X = rng.normal(size=(n, 27 + extra))
        X[:, 20:26] = np.where(rng.random((n, 6)) < 0.3, -5.0, X[:, 20:26])
        label = (rng.random(n) < 0.7).astype(float)
        names = ["# label"] + [f"f{j}" for j in range(27 + extra)]
        frame = pd.DataFrame(np.column_stack([label, X]), columns=names)
        frame.to_csv(folder / name, index=False)
        frames.append(frame)
    return frames


def write_miniboone(folder: Path, n: int = 300, seed: int = 0) -> np.ndarray:
    X = np.random.default_rng(seed).normal(size=(n, 43)) * 3 + 1
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "data.npy", X)
    return X


def write_bsds300(folder: Path, rows: tuple[int, int, int] = (200, 50, 60), seed: int = 0):
    import h5py

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    with h5py.File(folder / "BSDS300.hdf5", "w") as f:
        for key, n in zip(("train", "validation", "test"), rows, strict=True):
            out[key] = rng.normal(size=(n, 63)).astype(np.float32) * 0.1
            f.create_dataset(key, data=out[key])
    return out


def write_all(root: Path) -> None:
    """Every file-based dataset under ``root``, tiny and format-true."""
    write_idx_set(root / "mnist")
    write_idx_set(root / "fashion_mnist", seed=1)
    write_amat(root / "binarized_mnist")
    write_cifar10(root / "cifar10")
    write_power(root / "uci_power")
    write_gas(root / "uci_gas")
    write_hepmass(root / "uci_hepmass")
    write_miniboone(root / "uci_miniboone")
    write_bsds300(root / "uci_bsds300")
