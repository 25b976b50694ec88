"""The record format: what a cell record may hold, checked before anything reads it.

A run folder is data that anyone may hand over, so nothing that reads one (reports,
``compare``, :func:`densbench.results.load`) uses a record before :func:`check_record`
has checked it: the id's form (it becomes a file name), the type of every field read, and
that each stored array (:func:`encode_array`'s compact form) decodes to exactly its
declared size, within a bound on what reading may allocate. Unknown fields are allowed, so
a newer writer's records stay readable.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib
from typing import Any

import numpy as np

__all__ = ["CELL_ID", "MAX_ARRAY_VALUES", "RecordError", "StoreError", "check_manifest",
           "check_record", "decode_array", "encode_array"]

#: A cell id as the planner makes it (:attr:`densbench.runner.plan.Cell.id`: the first 16
#: hex digits of a SHA-256); a record's file name is ``<id>.json``, so nothing else may be one.
CELL_ID = re.compile(r"[0-9a-f]{16}")
#: The most values one stored array may hold: a bound on what reading a record allocates.
MAX_ARRAY_VALUES = 1 << 24


class StoreError(ValueError):
    """A run folder that cannot be used (missing, not a run, malformed record)."""


class RecordError(StoreError):
    """A record whose fields are not those of a densbench record (the message says which)."""


def encode_array(x: np.ndarray) -> dict[str, Any]:
    """Compact, exact JSON form of a float64 vector (zlib + base64).

    Example:
        >>> v = np.array([0.5, -1.25, np.pi])
        >>> bool(np.array_equal(decode_array(encode_array(v)), v))
        True
    """
    raw = np.ascontiguousarray(x, dtype="<f8").tobytes()
    return {"dtype": "<f8", "n": int(len(x)), "encoding": "zlib+base64",
            "data": base64.b64encode(zlib.compress(raw, 6)).decode("ascii")}


def decode_array(obj: dict[str, Any]) -> np.ndarray:
    """The float64 vector of :func:`encode_array`'s form; :class:`RecordError` when ``obj``
    is not one (another dtype or encoding, a count out of range, data that do not inflate
    to exactly ``n`` values). Inflation stops after ``n`` values, so a small crafted
    payload cannot expand into memory."""
    if not isinstance(obj, dict) or obj.get("dtype") != "<f8" \
            or obj.get("encoding") != "zlib+base64":
        raise RecordError("a stored array must have dtype '<f8' and encoding 'zlib+base64'")
    n = obj.get("n")
    if not _is_int(n) or not 0 <= n <= MAX_ARRAY_VALUES:
        raise RecordError(f"a stored array's n must be an integer in 0..{MAX_ARRAY_VALUES}; "
                          f"got {_shown(n)}")
    try:
        packed = base64.b64decode(obj.get("data"), validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, 8 * n + 1)
    except (binascii.Error, zlib.error, TypeError, ValueError):
        raise RecordError("a stored array's data are not zlib+base64") from None
    if len(raw) != 8 * n or inflater.unconsumed_tail or not inflater.eof:
        raise RecordError(f"a stored array's data do not hold exactly n = {n} values")
    return np.frombuffer(raw, dtype="<f8").copy()


# -- the record schema: what reading a run relies on, checked before any of it is used ----

_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "an object",
               list: "a list", type(None): "null", bool: "true or false"}
_NUM = (int, float)
_OPT_STR = (str, type(None))
_OPT_NUM = (int, float, type(None))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """A value as an error message shows it: its JSON type, and its text if short."""
    kind = _KIND_NAMES.get(type(value), type(value).__name__)
    text = json.dumps(value, default=str)
    return f"{kind} {text}" if len(text) <= 40 else kind


def _get(obj: dict[str, Any], key: str, kinds: tuple[type, ...], where: str,
         *, required: bool = True) -> Any:
    """``obj[key]`` if it is one of ``kinds`` (a bool is never a number), ``None`` if it is
    absent and not ``required``; else :class:`RecordError` naming the field."""
    if key not in obj:
        if required:
            raise RecordError(f"{where}{key} is missing")
        return None
    value = obj[key]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        wanted = " or ".join(dict.fromkeys(_KIND_NAMES[k] for k in kinds))
        raise RecordError(f"{where}{key} must be {wanted}; got {_shown(value)}")
    return value


def _check_identity(rec: dict[str, Any]) -> None:
    """What names a cell: its id, status, seed, estimator and dataset."""
    cell_id = _get(rec, "id", (str,), "")
    if not CELL_ID.fullmatch(cell_id):
        raise RecordError(f"id must be 16 hex digits (as the planner makes it); "
                          f"got {_shown(cell_id)}")
    status = _get(rec, "status", (str,), "")
    if not re.fullmatch(r"[a-z][a-z _-]{0,39}", status):
        raise RecordError(f"status must be a short lower-case word; got {_shown(status)}")
    if _get(rec, "seed", (int,), "") < 0:
        raise RecordError(f"seed must be >= 0; got {rec['seed']}")
    for part in ("estimator", "dataset"):
        spec = _get(rec, part, (dict,), "")
        if not _get(spec, "name", (str,), f"{part}."):
            raise RecordError(f"{part}.name is empty")
        _get(spec, "params", (dict,), f"{part}.", required=False)
    tune = _get(rec["estimator"], "tune", (dict, type(None)), "estimator.", required=False)
    if tune is not None:
        _get(tune, "space", (dict,), "estimator.tune.")
    _get(rec["dataset"], "sha256", _OPT_STR, "dataset.", required=False)
    for key in ("error", "likelihood_kind", "figure", "device"):
        _get(rec, key, _OPT_STR, "", required=False)


def _check_metrics(rec: dict[str, Any]) -> None:
    for i, m in enumerate(_get(rec, "metrics", (list, type(None)), "", required=False) or []):
        where = f"metrics[{i}]"
        if not isinstance(m, dict):
            raise RecordError(f"{where} must be an object; got {_shown(m)}")
        _get(m, "metric", (str,), f"{where}.")
        value = _get(m, "value", _OPT_NUM, f"{where}.")
        se = _get(m, "se", _OPT_NUM, f"{where}.", required=False)
        if value is not None and not math.isfinite(value):
            raise RecordError(f"{where}.value must be finite or null; got {value}")
        if se is not None and not (math.isfinite(se) and se >= 0):
            raise RecordError(f"{where}.se must be finite and >= 0, or null; got {se}")
        for key in ("unit", "note"):
            _get(m, key, _OPT_STR, f"{where}.", required=False)


def _check_array(obj: Any, where: str, shape: tuple[int, ...] | None = None) -> None:
    """An encoded array (:func:`encode_array`) that decodes, with ``prod(shape)`` values."""
    try:
        values = decode_array(obj)
    except RecordError as exc:
        raise RecordError(f"{where}: {exc}") from None
    if shape is not None and values.size != math.prod(shape):
        raise RecordError(f"{where} holds {values.size} values, not {math.prod(shape)} "
                          f"(shape {list(shape)})")


def _shape(obj: dict[str, Any], where: str, key: str = "shape") -> tuple[int, ...]:
    shape = _get(obj, key, (list,), where)
    if not 1 <= len(shape) <= 4 or not all(_is_int(n) and n > 0 for n in shape):
        raise RecordError(f"{where}{key} must be 1 to 4 positive integers; got "
                          f"{_shown(shape)}")
    return tuple(shape)


def _check_rows(parent: dict[str, Any], key: str, where: str) -> None:
    """An optional preview of rows (``parent[key]``): its shape and encoded values."""
    rows = _get(parent, key, (dict, type(None)), where, required=False)
    if rows is not None:
        _check_array(rows, f"{where}{key}", _shape(rows, f"{where}{key}."))


def _check_arrays(rec: dict[str, Any]) -> None:
    """The stored arrays: per-example figures, the sample preview, the density grids."""
    per_example = _get(rec, "per_example", (dict, type(None)), "", required=False) or {}
    for key, enc in per_example.items():
        if enc is not None:
            _check_array(enc, f"per_example.{key}")
    _check_rows(rec, "samples_preview", "")
    grid = _get(rec, "density_grid", (dict, type(None)), "", required=False)
    if grid is None:
        return
    size = _get(grid, "size", (int,), "density_grid.")
    if not 2 <= size <= 1024:
        raise RecordError(f"density_grid.size must be in 2..1024; got {size}")
    for axis in ("x", "y"):
        ends = _get(grid, axis, (list,), "density_grid.")
        if len(ends) != 2 or not all(isinstance(v, _NUM) and not isinstance(v, bool)
                                     and math.isfinite(v) for v in ends):
            raise RecordError(f"density_grid.{axis} must be two finite numbers; got "
                              f"{_shown(ends)}")
    _check_array(grid, "density_grid", (size, size))
    truth = _get(rec, "truth_grid", (dict, type(None)), "", required=False)
    if truth is not None:
        _check_array(truth, "truth_grid", (size, size))


def _check_data(rec: dict[str, Any]) -> None:
    """What the record says of its data: dimension and, where stored, the dataset's
    declared info (:class:`~densbench.data.base.DatasetInfo`) and a test-split preview."""
    data = _get(rec, "data", (dict, type(None)), "", required=False)
    if data is None:
        return
    if (dim := _get(data, "dim", (int,), "data.", required=False)) is not None and dim < 1:
        raise RecordError(f"data.dim must be >= 1; got {dim}")
    _check_rows(data, "test_preview", "data.")
    info = _get(data, "info", (dict, type(None)), "data.", required=False)
    if info is None:
        return
    w = "data.info."
    _get(info, "name", (str,), w)
    if _get(info, "dim", (int,), w) < 1:
        raise RecordError(f"{w}dim must be >= 1; got {info['dim']}")
    if _get(info, "kind", (str,), w) not in ("continuous", "discrete"):
        raise RecordError(f"{w}kind must be 'continuous' or 'discrete'; got {_shown(info['kind'])}")
    _get(info, "levels", (int, type(None)), w)
    _get(info, "params", (dict,), w)
    _get(info, "protocol_notes", (dict,), w)
    for key in ("image_shape", "sequence_shape"):
        if _get(info, key, (list, type(None)), w, required=False) is not None:
            _shape(info, w, key)


def _check_dims(rec: dict[str, Any]) -> None:
    """The shapes a record states agree with its data's dimension: preview rows have it,
    an image or sequence shape holds it."""
    data = rec.get("data") or {}
    info = data.get("info") or {}
    dim = data.get("dim", info.get("dim"))
    if dim is None:
        return
    if info and info["dim"] != dim:
        raise RecordError(f"data.info.dim ({info['dim']}) is not data.dim ({dim})")
    for where, rows in (("samples_preview", rec.get("samples_preview")),
                        ("data.test_preview", data.get("test_preview"))):
        if rows and (len(rows["shape"]) != 2 or rows["shape"][1] != dim):
            raise RecordError(f"{where}.shape must be [rows, {dim}] (the data's dimension); "
                              f"got {rows['shape']}")
    for key in ("image_shape", "sequence_shape"):
        if info.get(key) and math.prod(info[key]) != dim:
            raise RecordError(f"data.info.{key} {info[key]} does not hold the data's "
                              f"dimension {dim}")


def _check_tuning(rec: dict[str, Any]) -> None:
    """A tuning search's record (:func:`densbench.runner.tuning.tune`), as reports read it."""
    t = _get(rec, "tuning", (dict, type(None)), "", required=False)
    if t is None:
        return
    w = "tuning."
    for key in ("space", "chosen"):
        _get(t, key, (dict,), w)
    for key in ("search", "criterion", "unit", "final"):
        _get(t, key, (str,), w)
    if _get(t, "better", (str,), w) not in ("higher", "lower"):
        raise RecordError(f"{w}better must be 'higher' or 'lower'; got {_shown(t['better'])}")
    _get(t, "seed", (int, type(None)), w)
    _get(t, "seconds", _NUM, w)
    trials = _get(t, "trials", (list,), w)
    for i, trial in enumerate(trials):
        if not isinstance(trial, dict):
            raise RecordError(f"{w}trials[{i}] must be an object; got {_shown(trial)}")
        _get(trial, "params", (dict,), f"{w}trials[{i}].")
        _get(trial, "seconds", _NUM, f"{w}trials[{i}].")
        for key in ("score", "se"):
            _get(trial, key, _OPT_NUM, f"{w}trials[{i}].")
    if not 0 <= _get(t, "chosen_index", (int,), w) < len(trials):
        raise RecordError(f"{w}chosen_index must index tuning.trials; got {t['chosen_index']}")


def check_manifest(manifest: Any) -> None:
    """The parts of a manifest that reports and runs read are of their types."""
    if not isinstance(manifest, dict):
        raise RecordError(f"a manifest must be a JSON object; got {_shown(manifest)}")
    for key in ("suite", "versions", "machine"):
        _get(manifest, key, (dict,), "", required=False)
    _get(manifest, "git_commit", _OPT_STR, "", required=False)
    _get(manifest.get("machine") or {}, "hostname", _OPT_STR, "machine.", required=False)
    for i, inv in enumerate(_get(manifest, "invocations", (list,), "", required=False) or []):
        if not isinstance(inv, dict):
            raise RecordError(f"invocations[{i}] must be an object; got {_shown(inv)}")


def check_record(rec: Any) -> dict[str, Any]:
    """``rec`` if its fields are those of a densbench record, as reading a run uses them
    (types, the id's form, stored arrays that decode to their declared sizes); else
    :class:`RecordError` saying which field is wrong. Unknown fields are allowed."""
    if not isinstance(rec, dict):
        raise RecordError(f"a record must be a JSON object; got {_shown(rec)}")
    for check in (_check_identity, _check_metrics, _check_arrays, _check_data, _check_dims,
                  _check_tuning):
        check(rec)
    return rec
