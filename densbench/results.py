"""Reading stored results: ``db.results.load("results/<run>")`` -> tidy DataFrame.

``load`` takes one run folder or several (``load(a, b)`` or ``load([a, b])``) and returns
one table with a ``run`` column; :func:`export` writes that same table to a parquet or CSV
file, so what a user reads back is exactly what ``load`` gives.

A run folder is data: reading it checks every record against the record schema (one that
fails raises :class:`RecordError` naming its file and field) and never imports, calls or
unpickles anything a record names. The store itself (the only writer of run folders)
lives in :mod:`densbench.runner.store`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from densbench.runner.records import RecordError, StoreError, decode_array
from densbench.runner.store import COLUMNS, DTYPES, atomic_write, load, load_per_example, run_labels

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "DTYPES", "FORMATS", "RecordError", "TableFormat", "decode_array",
           "export", "format_of", "load", "load_per_example"]


@dataclass(frozen=True)
class TableFormat:
    """A file format :func:`export` writes: the file suffixes that name it, its writer."""

    suffixes: tuple[str, ...]
    write: Callable[[pd.DataFrame, BinaryIO], Any]


def _write_parquet(df: pd.DataFrame, fh: BinaryIO) -> None:
    """``df`` as parquet with one schema whatever it holds: seed int64, value and se
    float64, every other column a string (a column with no value is still a string
    column, not a null-typed one that other tools would read differently)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {"int64": pa.int64(), "float64": pa.float64()}
    schema = pa.schema([(c, kinds.get(DTYPES.get(c, ""), pa.string())) for c in df.columns])
    pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), fh)


#: The formats of :func:`export` by name. Parquet keeps the dtypes (seed int64, value and
#: se float64, missing values as nulls); CSV writes missing values as empty fields.
FORMATS = {
    "parquet": TableFormat((".parquet", ".pq"), _write_parquet),
    "csv": TableFormat((".csv",), lambda df, fh: df.to_csv(fh, index=False)),
}


def format_of(path: str | Path, format: str | None = None) -> str:
    """``format`` if given (checked), else the format that ``path``'s suffix names; a
    ValueError naming the choices otherwise.

    Example:
        >>> format_of("runs.parquet"), format_of("runs.txt", "csv")
        ('parquet', 'csv')
    """
    names = ", ".join(FORMATS)
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"unknown export format {format!r}; choose one of {names}")
        return format
    suffix = Path(path).suffix.lower()
    for name, fmt in FORMATS.items():
        if suffix in fmt.suffixes:
            return name
    raise ValueError(f"cannot tell the format from the suffix of {path}; name a file "
                     f"ending in {', '.join(s for f in FORMATS.values() for s in f.suffixes)} "
                     f"or give the format ({names})")


def export(runs: Sequence[str | Path], out: str | Path, format: str | None = None
           ) -> pd.DataFrame:
    """Write :func:`load`'s table of ``runs`` to the file ``out`` and return it.

    ``format`` ("parquet" or "csv") defaults to the one ``out``'s suffix names. The file
    is written whole or not at all (a temporary beside it, then renamed), and nothing else
    is written. A ValueError (:class:`StoreError`) names what is wrong: an unknown format,
    ``out`` a folder or in a folder that does not exist, a run folder that is missing, not
    a run, holds no cell record, or holds an invalid record (its file and field).
    """
    out = Path(out)
    if out.is_dir():
        raise StoreError(f"output path is a folder, not a file: {out}")
    if not out.parent.is_dir():
        raise StoreError(f"output file's folder does not exist: {out.parent}")
    fmt = FORMATS[format_of(out, format)]
    paths = [Path(r) for r in runs]
    table = load(paths)
    present = set(table["run"])
    for path, label in zip(paths, run_labels(paths), strict=True):
        if label not in present:
            raise StoreError(f"run folder holds no cell record: {path}")
    atomic_write(out, lambda fh: fmt.write(table, fh), mode=0o666 & ~_umask())
    return table


def _umask() -> int:
    """This process's umask, so that the table gets the permissions of any file the user
    writes (the temporary it is written to is private). Reading it means setting it:
    it is put back at once."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
