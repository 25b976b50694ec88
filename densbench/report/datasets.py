"""What a report knows of a run's datasets: read from the records, so a report needs
neither the user's data files nor their loaders.

Each record stores its dataset's declared info (shape, kind, levels, protocol) as the cell
saw it; the data themselves (the test split beside 2-D samples, a true density) are loaded
only where they are still available and unchanged (a file's SHA-256 equals the record's),
and a figure that needs them is otherwise drawn without them.
"""

from __future__ import annotations

import re
from typing import Any

from densbench.registry import is_spec

__all__ = ["dataset_info", "file_stem", "load_if_unchanged"]


def _where(rec: dict[str, Any]) -> dict[str, Any]:
    return {"seed": int(rec["seed"]), **rec["dataset"].get("params", {})}


def dataset_info(rec: dict[str, Any]) -> Any:
    """The :class:`~densbench.data.base.DatasetInfo` of a record's dataset: the one it
    stores, else (records written before it was stored) the registry's declaration."""
    from densbench import data
    from densbench.data.base import DatasetInfo

    stored = (rec.get("data") or {}).get("info")
    if stored:
        shapes = {k: None if stored.get(k) is None else tuple(stored[k])
                  for k in ("image_shape", "sequence_shape")}
        return DatasetInfo(**{**stored, **shapes})
    return data.info(rec["dataset"]["name"], **_where(rec))


def load_if_unchanged(rec: dict[str, Any]) -> Any | None:
    """The record's dataset if it can be loaded as the cell saw it (a user's file: present
    with the same content; a ``module:function`` loader: never assumed); else ``None``."""
    from densbench import data

    name = rec["dataset"]["name"]
    if data.is_data_file(name):
        digest = rec["dataset"].get("sha256")
        if digest is None or data.fingerprint(name, rec["dataset"].get("params", {})) != digest:
            return None
    elif is_spec(name) or name not in data.REGISTRY:
        return None
    try:
        return data.load(name, **_where(rec))
    except (ValueError, OSError, ImportError):
        return None


def file_stem(name: str) -> str:
    """A dataset (or estimator) name as a file-name stem: a path or spec keeps its last
    part, other characters become ``_``.

    Example:
        >>> file_stem("/home/me/data/x.npy"), file_stem("two_moons")
        ('x.npy', 'two_moons')
    """
    last = re.split(r"[/\\:]", name.rstrip("/\\"))[-1] or "dataset"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", last)
