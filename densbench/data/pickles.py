"""Pickled dataset files, read without running anything they name.

A pickle is a small program: unpickling calls whatever function or class the file names
(``os.system`` among them), so a checksum that a setting or a cache entry can skip is no
guard. Two sources distribute pickles: CIFAR-10's python batches (dicts of byte strings,
lists and numpy arrays) and the MAF archive's ``ethylene_CO.pickle`` (a pandas DataFrame
written by pandas 0.19 under Python 2, whose module paths pandas >= 2 no longer has). Both
are read by an unpickler whose ``find_class`` answers from an allow list only: numpy's array
reconstruction and, for the frame, stand-ins for pandas' DataFrame, BlockManager, blocks and
indexes that merely keep the state the pickle gives them. The DataFrame is then built from
that state with pandas' public constructor; pandas' own unpickler never runs. Any other name
stops the reading with :class:`ForbiddenPickle` before anything is called.

The frame layouts read (what pandas 0.15 to 3.x write for a DataFrame of numpy columns):

- the DataFrame: ``NEWOBJ`` then ``BUILD`` with its BlockManager (pandas < 0.17) or a dict
  holding it under ``_data`` (< 2.0) or ``_mgr``;
- the BlockManager: ``BUILD`` with ``(axes, values, items, {"0.14.1": {"axes": axes,
  "blocks": [{"values": 2-D array, "mgr_locs": slice or positions}]}})``, or called with
  ``(blocks, axes)``, each block ``_unpickle_block(values, placement, ndim)``;
- an index: ``_new_Index(cls, {"data": array, "name": ...})`` (a RangeIndex: ``start``,
  ``stop``, ``step``), with ``cls`` Index, Int64Index, UInt64Index, Float64Index or
  RangeIndex from ``pandas.core.index`` (0.16-0.17), ``pandas.indexes.*`` (0.18-0.19),
  ``pandas.core.indexes.*`` (0.20 on) or ``pandas`` (3.0 on).

Columns backed by something other than a numpy array (pandas 3's Arrow strings, say) are
refused by name like any other class.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ForbiddenPickle", "read_frame_pickle", "read_plain_pickle"]


class ForbiddenPickle(pickle.UnpicklingError):
    """A pickle that names a function or class outside the allow list (nothing ran)."""


# numpy's own reconstruction function: its module moved (numpy.core -> numpy._core), the
# function did not, and taking it from an array avoids importing either path by name.
_NUMPY_RECONSTRUCT = np.empty(0).__reduce__()[0]


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    """An empty array, filled by the pickle's ``BUILD`` (numpy's layout of every version)."""
    if cls is not np.ndarray:
        raise ForbiddenPickle(f"an array of class {cls!r}; only numpy.ndarray is read")
    return _NUMPY_RECONSTRUCT(np.ndarray, shape, typecode)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """An array from its bytes (numpy's layout for pickle protocol 5)."""
    if not isinstance(buf, bytes | bytearray) or not isinstance(dtype, np.dtype) \
            or dtype.hasobject:
        raise ValueError("an array from a buffer must be bytes of a plain numeric dtype")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for ``bytes`` written by Python 3."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ForbiddenPickle(f"_codecs.encode with encoding {encoding!r}; only latin1 "
                              "byte strings are read")
    return text.encode("latin-1")


class _Sealed(type):
    """The stand-ins' metaclass: a pickle's ``BUILD`` cannot change the classes themselves
    (and through them the next file read in this process)."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise ForbiddenPickle(f"the pickle sets {name} on a class; refused")


class _Function(metaclass=_Sealed):
    """An allowed function, in a wrapper that a pickle's ``BUILD`` cannot alter."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Any) -> None:
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise ForbiddenPickle(f"the pickle sets {name} on a function; refused")


_NUMPY: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _Function(_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _Function(_reconstruct),
    ("numpy.core.numeric", "_frombuffer"): _Function(_frombuffer),
    ("numpy._core.numeric", "_frombuffer"): _Function(_frombuffer),
    ("_codecs", "encode"): _Function(_latin1),
}


class _Restricted(pickle.Unpickler):
    """An unpickler that resolves only the names in ``allowed`` (the pickle's own module and
    name, before Python 2's names are mapped to Python 3's)."""

    def __init__(self, file: Any, allowed: Mapping[tuple[str, str], Any], encoding: str,
                 what: str) -> None:
        super().__init__(file, encoding=encoding)
        self._allowed, self._what = allowed, what

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise ForbiddenPickle(f"the pickle names {module}.{name}, which {self._what} "
                                  "does not contain; refused before anything in the file "
                                  "ran") from None

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickle("the pickle refers to a persistent object; refused")


def read_plain_pickle(path: Path, what: str, encoding: str = "bytes") -> Any:
    """The content of the pickle at ``path``, if it holds only Python's plain values (dicts,
    lists, tuples, strings, numbers) and numpy arrays; ``what`` names the expected content
    in the :class:`ForbiddenPickle` raised for anything else."""
    with open(path, "rb") as f:
        return _Restricted(f, _NUMPY, encoding, what).load()


# -- pandas' DataFrame, from its pickled state --------------------------------------------

class _Kept(metaclass=_Sealed):
    """A pandas object's stand-in: keeps its constructor arguments and pickled state."""

    args: tuple = ()
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Frame(_Kept):
    """A pickled ``pandas.DataFrame``."""


class _Manager(_Kept):
    """A pickled ``BlockManager``."""


@dataclass(frozen=True, slots=True)
class _IndexClass:
    """A pandas index class, by name (never called: ``_new_Index`` receives it)."""

    name: str


@dataclass(frozen=True)
class _Index:
    kind: str
    attrs: dict


@dataclass(frozen=True)
class _Block:
    values: Any
    placement: Any


def _new_index(cls: Any, attrs: Any) -> _Index:
    if not isinstance(cls, _IndexClass) or not isinstance(attrs, dict):
        raise ValueError("an index pickled with arguments of an unknown layout")
    return _Index(cls.name, attrs)


def _unpickle_block(values: Any, placement: Any, ndim: Any = 2) -> _Block:
    return _Block(values, placement)


def _frame_names() -> dict[tuple[str, str], Any]:
    names: dict[tuple[str, str], Any] = dict(_NUMPY)
    names.update({("pandas.core.frame", "DataFrame"): _Frame, ("pandas", "DataFrame"): _Frame,
                  ("pandas.core.internals", "BlockManager"): _Manager,
                  ("pandas.core.internals.managers", "BlockManager"): _Manager,
                  ("pandas._libs.internals", "_unpickle_block"): _Function(_unpickle_block),
                  ("pandas.core.internals.blocks", "new_block"): _Function(_unpickle_block),
                  ("__builtin__", "slice"): slice, ("builtins", "slice"): slice})
    for package in ("pandas.core.index", "pandas.indexes", "pandas.core.indexes"):
        base = package if package == "pandas.core.index" else f"{package}.base"
        names[(base, "_new_Index")] = _Function(_new_index)
        for module in {base, f"{package}.numeric", f"{package}.range", "pandas"}:
            for cls in ("Index", "Int64Index", "UInt64Index", "Float64Index", "RangeIndex"):
                names[(module, cls)] = _IndexClass(cls)
    return names


_FRAME_NAMES = _frame_names()


def _manager_parts(manager: _Manager) -> tuple[list, list[tuple[Any, Any]]]:
    """The manager's axes (columns, rows) and its blocks as (values, placement)."""
    if manager.args:  # called as BlockManager(blocks, axes)
        blocks, axes = manager.args[:2]
        if not all(isinstance(b, _Block) for b in blocks):
            raise ValueError("a BlockManager whose blocks are not numpy blocks")
        return list(axes), [(b.values, b.placement) for b in blocks]
    state = manager.state
    if isinstance(state, tuple) and len(state) >= 4 and isinstance(state[3], dict) \
            and isinstance(state[3].get("0.14.1"), dict):
        kept = state[3]["0.14.1"]
        return list(kept["axes"]), [(b["values"], b["mgr_locs"]) for b in kept["blocks"]]
    raise ValueError("a BlockManager state of an unknown layout (written before pandas "
                     "0.14.1?)")


def _labels(index: Any) -> Any:
    """A pickled index as a pandas index."""
    import pandas as pd

    if not isinstance(index, _Index):
        raise ValueError(f"an axis that is not an index ({type(index).__name__})")
    name = index.attrs.get("name")
    name = name if name is None or isinstance(name, str | int) else None
    if index.kind == "RangeIndex":
        bounds = [index.attrs.get(k, d) for k, d in (("start", 0), ("stop", None),
                                                     ("step", 1))]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in bounds):
            raise ValueError(f"a RangeIndex with bounds {bounds!r}")
        return pd.RangeIndex(*bounds, name=name)
    data = index.attrs.get("data")
    if not isinstance(data, np.ndarray) or data.ndim != 1:
        raise ValueError("an index whose data are not a 1-D numpy array")
    return pd.Index(data, dtype=data.dtype, name=name)


def _columns(n_cols: int, n_rows: int, blocks: list[tuple[Any, Any]]) -> list[np.ndarray]:
    """The frame's columns in order, each block's rows placed at their positions."""
    out: list[np.ndarray | None] = [None] * n_cols
    for values, placement in blocks:
        if not isinstance(values, np.ndarray) or values.ndim != 2 \
                or values.shape[1] != n_rows:
            raise ValueError(f"a block that is not a 2-D numpy array of {n_rows} rows")
        where = (np.arange(n_cols)[placement] if isinstance(placement, slice)
                 else np.asarray(placement))
        if where.ndim != 1 or len(where) != len(values) \
                or not np.issubdtype(where.dtype, np.integer):
            raise ValueError("a block whose placement does not match its values")
        for position, column in zip(where.tolist(), values, strict=True):
            if not 0 <= position < n_cols or out[position] is not None:
                raise ValueError(f"blocks that place column {position} of {n_cols} twice "
                                 "or outside the frame")
            out[position] = column
    if any(c is None for c in out):
        raise ValueError("blocks that leave a column without values")
    return out  # type: ignore[return-value]


def read_frame_pickle(path: Path):
    """The pandas DataFrame pickled at ``path`` (the layouts of the module docstring),
    built with pandas' constructor from its columns and axes; any name outside the allow
    list raises :class:`ForbiddenPickle`, any other layout ``ValueError``."""
    import pandas as pd

    with open(path, "rb") as f:
        frame = _Restricted(f, _FRAME_NAMES, "latin1", "a pandas DataFrame of numbers").load()
    if not isinstance(frame, _Frame):
        raise ValueError(f"the pickle holds a {type(frame).__name__}, not a DataFrame")
    state = frame.state
    manager = state.get("_mgr", state.get("_data")) if isinstance(state, dict) else state
    if not isinstance(manager, _Manager):
        raise ValueError("a DataFrame without a BlockManager")
    axes, blocks = _manager_parts(manager)
    if len(axes) != 2:
        raise ValueError(f"a DataFrame with {len(axes)} axes")
    columns, rows = _labels(axes[0]), _labels(axes[1])
    data = _columns(len(columns), len(rows), blocks)
    out = pd.DataFrame(dict(enumerate(data)), index=rows)
    out.columns = columns
    return out
