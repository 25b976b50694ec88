"""Which dataset names are paths to a user's data file: the formats a name may point at.

A module of its own so that the registry (:mod:`densbench.data`) and the file reader
(:mod:`densbench.data.userfiles`) both read it without importing each other.
"""

from __future__ import annotations

__all__ = ["SUFFIXES", "is_data_file"]

#: The file formats a dataset name may point at.
SUFFIXES = (".npy", ".npz", ".csv", ".parquet")


def is_data_file(name: str) -> bool:
    """Whether dataset ``name`` is a path to a data file (by its suffix).

    Example:
        >>> is_data_file("runs/x.npy"), is_data_file("digits"), is_data_file("m:load")
        (True, False, False)
    """
    return isinstance(name, str) and name.lower().endswith(SUFFIXES)
