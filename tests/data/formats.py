"""Small files in the exact formats the sources distribute (for the loaders' tests and the
end-to-end run of the published-protocol suite). Every writer returns the arrays it wrote."""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Global", "New", "Reduce", "old_pandas_pickle", "py2_pickle", "write_all",
           "write_amat", "write_bsds300", "write_cifar10", "write_gas", "write_hepmass",
           "write_idx", "write_idx_set", "write_miniboone", "write_power"]


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


# -- pickles as Python 2.7 and old pandas wrote them ------------------------------------
# The MAF archive's ethylene_CO.pickle was written by pandas 0.19 under Python 2.7 (cPickle,
# protocol 2), in module paths and a layout that pandas >= 2 no longer reads. These helpers
# write that byte stream opcode by opcode (no memo: shared objects are written twice, which
# unpickles to equal values), so the loader is tested on the archive's format.

@dataclass(frozen=True)
class Global:
    """``GLOBAL module name`` (Python 2's names, e.g. ``__builtin__``)."""

    module: str
    name: str


@dataclass(frozen=True)
class Reduce:
    """``func(*args)`` (``REDUCE``), then ``BUILD`` with ``state`` unless it is None."""

    func: Any
    args: tuple
    state: Any = None


@dataclass(frozen=True)
class New:
    """``cls.__new__(cls)`` (``NEWOBJ``), then ``BUILD`` with ``state``."""

    cls: Global
    state: Any


def _emit_scalar(obj: Any, out: bytearray) -> bool:
    if obj is None or isinstance(obj, bool):
        out += {None: b"N", True: b"\x88", False: b"\x89"}[obj]
    elif isinstance(obj, int):
        out += b"K" + bytes([obj]) if 0 <= obj < 256 else b"J" + struct.pack("<i", obj)
    elif isinstance(obj, float):
        out += b"G" + struct.pack(">d", obj)
    elif isinstance(obj, str | bytes):  # a Python 2 str: SHORT_BINSTRING / BINSTRING
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        out += (b"U" + bytes([len(raw)]) if len(raw) < 256
                else b"T" + struct.pack("<i", len(raw))) + raw
    else:
        return False
    return True


def _emit_array(a: np.ndarray, out: bytearray) -> None:
    """numpy 1.x under Python 2: ``_reconstruct(ndarray, (0,), 'b')`` then ``BUILD`` with
    (version, shape, dtype, is_fortran, raw bytes or, for objects, a list)."""
    fortran = bool(a.flags.f_contiguous and not a.flags.c_contiguous)
    raw = a.ravel(order="F" if fortran else "C")
    payload = raw.tolist() if a.dtype.hasobject else raw.tobytes()
    _, (code, _, _), dstate = a.dtype.__reduce__()
    dtype = Reduce(Global("numpy", "dtype"), (code, 0, 1), dstate)
    _emit(Reduce(Global("numpy.core.multiarray", "_reconstruct"),
                 (Global("numpy", "ndarray"), (0,), "b"),
                 (1, a.shape, dtype, fortran, payload)), out)


def _emit(obj: Any, out: bytearray) -> None:
    if _emit_scalar(obj, out):
        return
    if isinstance(obj, np.ndarray):
        _emit_array(obj, out)
    elif isinstance(obj, Global):
        out += f"c{obj.module}\n{obj.name}\n".encode()
    elif isinstance(obj, Reduce | New):
        _emit(obj.func if isinstance(obj, Reduce) else obj.cls, out)
        if isinstance(obj, Reduce):
            _emit(obj.args, out)
            out += b"R"
        else:
            out += b")\x81"
        if obj.state is not None:
            _emit(obj.state, out)
            out += b"b"
    elif isinstance(obj, tuple):
        out += b"("
        for item in obj:
            _emit(item, out)
        out += b"t"
    elif isinstance(obj, list | dict):
        out += b"]" if isinstance(obj, list) else b"}"
        if obj:
            out += b"("
            for item in (obj if isinstance(obj, list) else
                         [x for kv in obj.items() for x in kv]):
                _emit(item, out)
            out += b"e" if isinstance(obj, list) else b"u"
    else:
        raise TypeError(f"py2_pickle: cannot write {type(obj).__name__}")


def py2_pickle(obj: Any) -> bytes:
    """The protocol-2 pickle of ``obj`` (plain values, numpy arrays, :class:`Global`,
    :class:`Reduce`, :class:`New`) as Python 2.7's cPickle writes it, without a memo."""
    out = bytearray(b"\x80\x02")
    _emit(obj, out)
    return bytes(out + b".")


def old_pandas_pickle(frame, indexes: str = "pandas.indexes") -> bytes:
    """``frame`` pickled as pandas 0.19 (``indexes="pandas.indexes"``) or 0.20
    (``"pandas.core.indexes"``) did under Python 2.7: the DataFrame's state a dict holding
    its BlockManager, whose state is (axes, block values, block items, {"0.14.1": ...});
    one block per dtype, placed by a slice when its columns are adjacent; the columns an
    object Index, the rows an Int64Index."""

    def index(kind: str, module: str, data: np.ndarray) -> Reduce:
        return Reduce(Global(f"{indexes}.base", "_new_Index"),
                      (Global(f"{indexes}.{module}", kind), {"data": data, "name": None}))

    names = np.array(list(frame.columns), dtype=object)
    axes = [index("Index", "base", names),
            index("Int64Index", "numeric", np.asarray(frame.index, dtype=np.int64))]
    dtypes = list(dict.fromkeys(frame.dtypes))
    blocks = []
    for dtype in dtypes:
        where = np.flatnonzero(np.asarray(frame.dtypes == dtype))
        values = np.ascontiguousarray(frame.iloc[:, where].to_numpy(dtype=dtype).T)
        adjacent = (np.diff(where) == 1).all()
        locs = slice(int(where[0]), int(where[-1]) + 1, 1) if adjacent else where
        blocks.append({"values": values, "mgr_locs": locs, "items": index(
            "Index", "base", names[where])})
    state = (axes, [b["values"] for b in blocks], [b["items"] for b in blocks],
             {"0.14.1": {"axes": axes, "blocks": [
                 {"values": b["values"], "mgr_locs": _slice(b["mgr_locs"])} for b in blocks]}})
    manager = New(Global("pandas.core.internals", "BlockManager"), state)
    return py2_pickle(New(Global("pandas.core.frame", "DataFrame"),
                          {"_data": manager, "_typ": "dataframe", "_metadata": []}))


def _slice(locs: Any) -> Any:
    """A block's placement: ``slice(start, stop, step)`` as Python 2 pickles it."""
    if isinstance(locs, slice):
        return Reduce(Global("__builtin__", "slice"), (locs.start, locs.stop, locs.step))
    return np.asarray(locs, dtype=np.int64)


def write_gas(folder: Path, n: int = 300, seed: int = 0, indexes: str = "pandas.indexes"):
    """``ethylene_CO.pickle`` as the MAF archive has it (pandas 0.19, Python 2.7; see
    :func:`old_pandas_pickle`): a DataFrame with Meth, Eth, Time and 16 sensors, of which 8
    are near-copies of others (dropped by the correlation rule), its rows a shuffled sample
    with their original labels."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 8))
    copies = base + 1e-3 * rng.normal(size=(n, 8))
    cols = {"Time": np.arange(n, dtype=float), "Meth": rng.random(n), "Eth": rng.random(n)}
    for j in range(8):
        cols[f"copy{j}"] = copies[:, j]
        cols[f"sensor{j}"] = base[:, j]
    frame = pd.DataFrame(cols, index=rng.permutation(4 * n)[:n])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ethylene_CO.pickle").write_bytes(old_pandas_pickle(frame, indexes))
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
