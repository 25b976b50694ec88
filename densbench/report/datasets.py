"""What a report knows of a run's datasets: only what the records store.

A results folder is data that people share, so a report never loads, imports or calls
anything a record names (a dataset name may be a ``module:function`` or a file path). Each
record stores its dataset's declared info (shape, kind, levels, protocol), for 2-D data a
preview of the test split, and where the true density is known its log-density on the
record's density grid. What a record lacks is not drawn, and the report says what and why
(:data:`MISSING`).

Every file a report writes is named from checked record fields (:func:`file_stem`) and
confined to the report's folder (:func:`confined`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from densbench.runner.records import decode_array

__all__ = ["MISSING", "confined", "dataset_info", "file_stem", "stored_test_rows",
           "truth_grid"]

#: What a report leaves out when the records lack it, as the report explains it.
MISSING = {
    "info": "sample galleries of image data and published figures (the records store no "
            "dataset info: written by an older densbench; run the cells again to get them)",
    "test_preview": "the test data beside 2-D samples (the records store no test preview: "
                    "written by an older densbench)",
    "truth_grid": "the true density beside the estimated ones (the records store no truth "
                  "grid: written by an older densbench)",
}


def dataset_info(rec: dict[str, Any]) -> Any | None:
    """The :class:`~densbench.data.base.DatasetInfo` a checked record stores for its
    dataset, or ``None`` where it stores none (the dataset is never loaded to find it)."""
    from dataclasses import fields

    from densbench.data.base import DatasetInfo

    stored = (rec.get("data") or {}).get("info")
    if not stored:
        return None
    known = {f.name for f in fields(DatasetInfo)}
    values = {k: v for k, v in stored.items() if k in known}
    for key in ("image_shape", "sequence_shape"):
        values[key] = None if values.get(key) is None else tuple(values[key])
    return DatasetInfo(**values)


def _stored_rows(obj: dict[str, Any] | None) -> np.ndarray | None:
    return None if not obj else decode_array(obj).reshape(obj["shape"])


def stored_test_rows(rec: dict[str, Any]) -> np.ndarray | None:
    """The first test rows a checked 2-D record stores (n, 2), else ``None``."""
    return _stored_rows((rec.get("data") or {}).get("test_preview"))


def truth_grid(rec: dict[str, Any]) -> np.ndarray | None:
    """The true log-density on the record's density grid (size x size), else ``None``."""
    enc, grid = rec.get("truth_grid"), rec.get("density_grid")
    if not enc or not grid:
        return None
    size = int(grid["size"])
    return decode_array(enc).reshape(size, size)


def file_stem(name: str) -> str:
    """A dataset (or estimator) name as a file-name stem: a path or spec keeps its last
    part, other characters become ``_``, and a name that changed gets a short digest of
    itself (two files ``a/x.npy`` and ``b/x.npy`` are two figures).

    Example:
        >>> file_stem("two_moons")
        'two_moons'
        >>> file_stem("/home/me/data/x.npy")
        'x.npy-7a22d4bf'
    """
    last = re.split(r"[/\\:]", name.rstrip("/\\"))[-1]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", last).strip(".") or "dataset"
    if stem == name:
        return stem
    return f"{stem[:60]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def confined(root: Path, *parts: str) -> Path:
    """``root / parts...`` when that path, links resolved, lies inside ``root`` and each
    part is one plain name; ``ValueError`` otherwise, so that no record (nor a link planted
    in a shared run folder) can steer a write elsewhere."""
    path = root.joinpath(*parts)
    plain = all(p not in ("", ".", "..") and Path(p).name == p for p in parts)
    if not plain or not path.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write {path}: outside the report's folder {root}")
    return path
