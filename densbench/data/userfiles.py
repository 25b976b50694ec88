"""A user's own data wherever a dataset name is accepted: a file or a ``module:function``.

A path to a ``.npy``, ``.npz``, ``.csv`` (numeric columns, with or without a header row)
or ``.parquet`` (through pandas) file is a dataset. It must hold a real (n, d) array: one row
per example, one column per feature. Anything that would lose information on the way to
float64 is refused with an error naming the file: complex numbers (store the real and
imaginary parts as two columns), Python objects, structured (record) arrays, and 1-D arrays
(ambiguous: n examples of one feature or one example of n; reshape to (n, 1) or (1, n)).

A ``.csv`` file's first row is a header unless every field in it is a number (Python's
``float`` syntax, e.g. ``3``, ``-0.5``, ``1e-3``), as in ``np.savetxt``'s files, and the
numbers are not exactly ``0, 1, ..., d-1``, the names pandas' ``to_csv`` writes for a frame
without column names. ``header = true`` or ``false`` overrides the rule.

Its parameters:

- ``kind`` (``"continuous"`` or ``"discrete"``) and ``levels`` (discrete data: integer
  levels ``0 .. levels - 1``; by default the largest value plus one);
- the split: ``split = [train, val, test]`` fractions of the rows, shuffled by the seed
  (default ``[0.8, 0.1, 0.1]``), or explicit splits: for an ``.npz`` the keys ``train``,
  ``val`` and ``test`` (used by default when the archive holds those names), for the
  other formats ``val`` and ``test`` files of the same format beside the named training
  file (paths relative to it or absolute);
- ``header`` (``.csv`` only): whether the first row holds column names (default: the rule
  above);
- ``log_prob``: ``"module:function"`` (or ``"path/file.py:function"``) giving the true
  log-density of rows (n, d) -> (n,) in nats, for data with a known density (a relative
  ``.py`` path is taken beside the data file): the report then shows the gap to the truth.

The split of a shuffled file depends on its values and the seed, never on its path or
format (the same rows in a ``.npy`` and a ``.csv`` split alike), and the SHA-256 of every
file read is part of each cell's id (:func:`fingerprint`), so a changed file is a new cell,
never a silent resume.

A ``module:function`` loader is called as ``function(seed=seed, **params)`` (``seed`` only
if it takes one) and returns a :class:`~densbench.data.base.Dataset`, or an array (n, d)
that is split as a file is.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from densbench.data.base import Dataset, Truth, split_rng
from densbench.data.filenames import is_data_file
from densbench.data.root import DataFileError, file_digest
from densbench.registry import PluginError, import_spec, is_spec

__all__ = ["fingerprint", "from_arrays", "load_file", "resolve"]

#: Fractions of the rows in train, validation and test when a file is split by the seed.
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
_SPLITS = ("train", "val", "test")


def _files(path: Path, params: dict[str, Any]) -> list[Path]:
    out = [path]
    if path.suffix.lower() != ".npz":
        out += [_beside(path, params[s]) for s in ("val", "test") if params.get(s)]
    return out


def _beside(path: Path, other: str) -> Path:
    p = Path(other).expanduser()
    return p if p.is_absolute() else path.parent / p


#: A file changed this recently may change again without its size, modification or change
#: time moving (timestamps are as coarse as the kernel's clock tick, or a FAT file system's
#: 2 s): its digest is computed afresh rather than taken from the cache (git's "racy clean").
_RACY_NS = 3_000_000_000


@functools.lru_cache(maxsize=64)
def _cached_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    return file_digest(Path(path), "sha256")


def _digest(path: Path) -> str:
    """SHA-256 of the file at ``path``, cached by its size, inode, modification and change
    times (a rewrite moves the change time even where ``touch`` or ``cp -p`` restored the
    modification time)."""
    st = path.stat()
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
        return file_digest(path, "sha256")
    return _cached_digest(os.path.realpath(path), st.st_size, st.st_mtime_ns,
                          st.st_ctime_ns, st.st_ino)


def fingerprint(name: str, params: dict[str, Any]) -> str | None:
    """SHA-256 of the content of every file dataset ``name`` reads with ``params`` (one
    digest over them all); ``None`` for a dataset that is not a file, or whose file is gone
    (a record of a finished run keeps the digest it was run with)."""
    if not is_data_file(name):
        return None
    digests = []
    for p in _files(Path(name), params):
        try:
            digests.append(_digest(p))
        except OSError:
            return None
    return digests[0] if len(digests) == 1 else "+".join(digests)


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _has_header(path: Path) -> bool:
    """Whether the first row of a ``.csv`` file holds column names (the rule of the module
    docstring)."""
    import pandas as pd

    first = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    fields = [str(v).strip() for v in first.iloc[0].tolist()] if len(first) else []
    if not all(_is_number(f) for f in fields):
        return True
    return fields == [str(i) for i in range(len(fields))]  # pandas' unnamed columns


def _read(path: Path, who: str, header: bool | None = None) -> Any:
    """The array (or, for ``.npz``, the archive's arrays) stored at ``path``."""
    if not path.is_file():
        raise DataFileError(f"dataset {who}: no such file {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        import pandas as pd

        if suffix == ".csv":
            names = _has_header(path) if header is None else header
            frame = pd.read_csv(path, header=0 if names else None)
        else:
            frame = pd.read_parquet(path)
    except (OSError, ValueError, ImportError) as exc:
        raise DataFileError(f"dataset {who}: cannot read {path} ({type(exc).__name__}: "
                            f"{exc})") from None
    from pandas.api.types import is_numeric_dtype

    if len(frame.columns) and str(frame.columns[0]).startswith("Unnamed: 0"):
        raise DataFileError(f"dataset {who}: {path.name}'s first column has no name: the row "
                            "labels pandas' to_csv writes unless index=False? Write the file "
                            "without them, or name the column")
    bad = [str(c) for c in frame.columns if not is_numeric_dtype(frame[c].dtype)]
    if bad:
        raise DataFileError(f"dataset {who}: {path.name} has non-numeric column(s) "
                            f"{', '.join(bad)}; every column must be a number")
    return frame.to_numpy(dtype=np.float64)


def _lossy(dtype: np.dtype) -> str | None:
    """Why an array of ``dtype`` cannot become float64 without losing information, and how
    to store it instead (None: it can)."""
    if dtype.names:
        return (f"a structured array with fields {', '.join(dtype.names)}; store a plain "
                "(n, d) array of numbers, e.g. numpy.lib.recfunctions."
                "structured_to_unstructured(x)")
    if np.issubdtype(dtype, np.complexfloating):
        return ("complex numbers, whose imaginary parts would be lost; store the real and "
                "imaginary parts as separate columns, e.g. np.column_stack([z.real, z.imag])")
    if dtype.hasobject:
        return "Python objects; store an array of numbers"
    return None


def _matrix(arr: Any, who: str, what: str) -> np.ndarray:
    a = np.asarray(arr)
    lossy = _lossy(a.dtype)
    if lossy:
        raise DataFileError(f"dataset {who}: {what} has dtype {a.dtype}: {lossy}")
    if a.ndim == 1:
        n = a.shape[0]
        raise DataFileError(f"dataset {who}: {what} is 1-D (shape ({n},)); a dataset is "
                            f"(n, d), one row per example: reshape to ({n}, 1) for one "
                            f"feature (x.reshape(-1, 1)) or to (1, {n}) for one example")
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number) or a.shape[0] < 1:
        raise DataFileError(f"dataset {who}: {what} must be a numeric (n, d) array; got "
                            f"shape {a.shape} of {a.dtype}")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        raise DataFileError(f"dataset {who}: {what} contains {int(bad.sum())} non-finite "
                            f"value(s) (NaN or inf), first in row {int(np.argwhere(bad)[0, 0])}")
    return a


def _split_by_fractions(X: np.ndarray, fractions: Sequence[float], seed: int,
                        who: str) -> list[np.ndarray]:
    """Rows shuffled by their values and the seed (the same split in any format, from any
    path), then cut in the given fractions."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f <= 0).any() or abs(f.sum() - 1.0) > 1e-9:
        raise ValueError(f"dataset {who}: split must be 3 fractions > 0 (train, val, test) "
                         f"summing to 1; got {list(fractions)!r}")
    n = X.shape[0]
    n_val, n_test = int(round(f[1] * n)), int(round(f[2] * n))
    if min(n_val, n_test, n - n_val - n_test) < 2:
        raise ValueError(f"dataset {who}: {n} rows are too few to split {list(fractions)} "
                         f"with at least 2 rows in each split")
    key = hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest()
    order = split_rng(key, seed).permutation(n)
    cut = n - n_val - n_test
    return [X[order[:cut]], X[order[cut:cut + n_val]], X[order[cut + n_val:]]]


class _FunctionTruth(Truth):
    """A known log-density given by a user's function (no sampler: only ``log_prob`` is
    used, for the gap to the truth)."""

    def __init__(self, spec: str, fn: Callable[[np.ndarray], Any], dim: int) -> None:
        self.spec, self.fn, self.dim = spec, fn, dim

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        out = np.asarray(self.fn(X), dtype=np.float64)
        if out.shape != (X.shape[0],):
            raise ValueError(f"log_prob {self.spec}: returned shape {out.shape}; one value "
                             f"per row ({X.shape[0]},) is required")
        return out

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError(f"log_prob {self.spec}: a user's density has no sampler")


def from_arrays(who: str, splits: list[np.ndarray], seed: int, *,
                kind: Literal["continuous", "discrete"], levels: int | None,
                log_prob: str | None, params: dict[str, Any],
                notes: dict[str, Any]) -> Dataset:
    """A :class:`Dataset` of the user's splits, with the parameters checked."""
    if kind not in ("continuous", "discrete"):
        raise ValueError(f"dataset {who}: kind must be 'continuous' or 'discrete'; got "
                         f"{kind!r}")
    dims = {s.shape[1] for s in splits}
    if len(dims) != 1:
        raise DataFileError(f"dataset {who}: train, val and test have different numbers of "
                            f"columns {[s.shape[1] for s in splits]}")
    if kind == "discrete":
        top = max(int(s.max()) for s in splits) + 1
        levels = top if levels is None else levels
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"dataset {who}: levels must be an int >= 2; got {levels!r}")
        for s in splits:
            if (s != np.round(s)).any() or s.min() < 0 or s.max() >= levels:
                raise DataFileError(f"dataset {who}: discrete data must be integers 0 .. "
                                    f"{levels - 1} (levels = {levels})")
    elif levels is not None:
        raise ValueError(f"dataset {who}: levels is only for kind = 'discrete'")
    truth = None
    if log_prob is not None:
        if kind != "continuous" or not isinstance(log_prob, str) or not is_spec(log_prob):
            raise ValueError(f"dataset {who}: log_prob must be 'module:function' (continuous "
                             f"data); got {log_prob!r}")
        truth = _FunctionTruth(log_prob, import_spec(log_prob, "log_prob"), dims.pop())
    return Dataset(who, seed, *splits, kind=kind, levels=levels if kind == "discrete" else None,
                   truth=truth, params=params, protocol_notes=notes)


def load_file(path: str, seed: int = 0, *, kind: Literal["continuous", "discrete"] = "continuous",
              levels: int | None = None, split: Sequence[float] | None = None,
              train: str | None = None, val: str | None = None, test: str | None = None,
              header: bool | None = None, log_prob: str | None = None) -> Dataset:
    """The dataset in the file at ``path`` (see the module docstring for the parameters)."""
    p = Path(path)
    params = {k: v for k, v in dict(kind=kind, levels=levels, split=split, train=train,
                                    val=val, test=test, header=header,
                                    log_prob=log_prob).items()
              if v is not None}
    if header is not None and (p.suffix.lower() != ".csv" or not isinstance(header, bool)):
        raise ValueError(f"dataset {path}: header must be true or false, for a .csv file; "
                         f"got {header!r} for a {p.suffix} file")
    explicit = [s for s in _SPLITS if params.get(s)]
    if explicit and split is not None:
        raise ValueError(f"dataset {path}: give split fractions or explicit {', '.join(_SPLITS)}"
                         ", not both")
    stored = _read(p, path, header)
    if isinstance(stored, dict):  # .npz: named arrays
        keys = {s: params.get(s) or s for s in _SPLITS}
        if explicit or (split is None and all(k in stored for k in keys.values())):
            missing = [k for k in keys.values() if k not in stored]
            if missing:
                raise DataFileError(f"dataset {path}: no array {', '.join(missing)} in the "
                                    f"archive; it holds {', '.join(stored) or 'none'}")
            splits = [_matrix(stored[keys[s]], path, f"array {keys[s]}") for s in _SPLITS]
        elif len(stored) == 1:
            (only,) = stored.values()
            splits = None
            X = _matrix(only, path, "the array")
        else:
            raise DataFileError(f"dataset {path}: the archive holds {', '.join(stored)}; name "
                                f"the train, val and test keys, or store one array")
    else:
        if train is not None:
            raise ValueError(f"dataset {path}: train names an .npz key; for a "
                             f"{p.suffix} file the named file is the training split")
        if bool(val) != bool(test):
            raise ValueError(f"dataset {path}: give both val and test files, or neither")
        splits = None
        X = _matrix(stored, path, "the data")
        if val:
            splits = [X] + [_matrix(_read(_beside(p, f), path, header), path, s)
                            for s, f in (("val", val), ("test", test))]
    if splits is None:
        splits = _split_by_fractions(X, split or DEFAULT_SPLIT, seed, path)
    notes = {"source": "user file", "sha256": fingerprint(path, params)}
    if isinstance(log_prob, str) and log_prob.rpartition(":")[0].endswith(".py"):
        target, _, attr = log_prob.rpartition(":")  # a relative file: beside the data
        log_prob = f"{_beside(p, target)}:{attr}"
    return from_arrays(path, splits, seed, kind=kind, levels=levels, log_prob=log_prob,
                       params=params, notes=notes)


def _from_function(spec: str, fn: Callable[..., Any]) -> Callable[..., Dataset]:
    """A registry loader around a user's ``module:function``: its parameters are the
    function's own."""
    sig = inspect.signature(fn)
    takes_seed = "seed" in sig.parameters

    def loader(seed: int = 0, **params: Any) -> Dataset:
        out = fn(seed=seed, **params) if takes_seed else fn(**params)
        if isinstance(out, Dataset):
            return out
        X = _matrix(out, spec, f"what {spec} returned")
        splits = _split_by_fractions(X, DEFAULT_SPLIT, seed, spec)
        return from_arrays(spec, splits, seed, kind="continuous", levels=None, log_prob=None,
                           params=params, notes={"source": f"function {spec}"})

    params = [p for k, p in sig.parameters.items() if k != "seed"]
    loader.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[inspect.Parameter("seed", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                      default=0), *params])
    loader.__doc__ = inspect.getdoc(fn) or f"Dataset from {spec}"
    return loader


def resolve(name: str, obj: Any) -> Callable[..., Dataset]:
    """The registry's hook for datasets from outside it: a file path, a ``module:function``
    loader, or an entry point's loader."""
    if obj is None:  # a data file
        if not Path(name).is_file():
            raise DataFileError(f"dataset {name}: no such file")
        return functools.partial(load_file, str(Path(name)))
    if not callable(obj):
        raise PluginError(f"dataset {name!r}: {obj!r} is not a loader function")
    return _from_function(name, obj)
