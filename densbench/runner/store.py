"""The run store: the ONLY writer and reader of results on disk.

Layout of a run folder::

    <run>/manifest.json        suite, command lines, versions, git commit, machine, times
    <run>/cells/<id>.json      one record per finished cell (ok or failed)
    <run>/floors/<key>.json    the sample metrics' floor of a dataset, seed and sample size,
                               with the seconds it took (:mod:`densbench.runner.floors`)

Every write is atomic (a temporary file in the same folder, fsync, then ``os.replace``),
so a run killed at any instant leaves only whole records; re-running resumes. A
temporary's name carries its writer's host and pid, so that only the temporaries of
writers that are gone are ever removed. One run at a time writes into a folder: it holds
``<run>/.lock`` (:meth:`RunStore.lock`); a record that cannot be read is moved aside to
``<run>/corrupt/`` (:meth:`RunStore.scan`) so that its cell runs again.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as _dt
import json
import math
import os
import re
import socket
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CELL_ID", "RecordError", "RunLocked", "RunStore", "StoreError", "check_record",
           "dataset_labels", "decode_array", "encode_array", "frame", "load", "load_per_example",
           "per_example"]

MANIFEST = "manifest.json"
CELLS = "cells"
FLOORS = "floors"
LOCK = ".lock"
CORRUPT = "corrupt"
SCHEMA = 1
#: This process's host, as lock files and temporaries name it.
HOST = socket.gethostname()
#: A cell id as the planner makes it (:attr:`densbench.runner.plan.Cell.id`: the first 16
#: hex digits of a SHA-256); a record's file name is ``<id>.json``, so nothing else may be one.
CELL_ID = re.compile(r"[0-9a-f]{16}")
#: The most values one stored array may hold: a bound on what reading a record allocates.
MAX_ARRAY_VALUES = 1 << 24


class StoreError(ValueError):
    """A run folder that cannot be used (missing, not a run, malformed record)."""


class RunLocked(StoreError):
    """Another live run is writing into the folder."""


class RecordError(StoreError):
    """A record whose fields are not those of a densbench record (the message says which)."""


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _read_holder(path: Path) -> dict[str, Any] | None:
    """What a lock file says of its holder (pid, host, since); None if it says nothing
    readable (being written, or empty)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _writer_gone(tmp: Path) -> bool:
    """Whether the writer of temporary file ``tmp`` (``.<name>~<host>~<pid>~<random>.tmp``)
    was a process on this host that has ended; a name in any other form is left alone."""
    parts = tmp.name.split("~")
    if len(parts) != 4 or parts[1] != HOST or not parts[2].isdigit():
        return False
    return not _alive(int(parts[2]))


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


def _atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, sort_keys=False, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}~{HOST}~{os.getpid()}~", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _json_safe(obj: Any) -> Any:
    """Replace non-finite floats by None so that records are strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


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
    for key in ("error", "likelihood_kind", "figure"):
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


def _check_manifest(manifest: Any) -> None:
    """The parts of a manifest that reports and runs read are of their types."""
    if not isinstance(manifest, dict):
        raise RecordError(f"a manifest must be a JSON object; got {_shown(manifest)}")
    for key in ("suite", "versions", "machine"):
        _get(manifest, key, (dict,), "", required=False)
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


class RunStore:
    """A run folder. ``create=True`` makes it (its parent must exist)."""

    def __init__(self, root: str | Path, *, create: bool = False) -> None:
        self.root = Path(root)
        if create:
            if not self.root.parent.is_dir():
                raise StoreError(f"output folder's parent does not exist: {self.root.parent}")
            if self.root.exists() and not self.root.is_dir():
                raise StoreError(f"output path exists and is not a folder: {self.root}")
            self.cells_dir.mkdir(parents=True, exist_ok=True)
            self._clean_temporaries()
        elif not self.root.is_dir():
            raise StoreError(f"no such run folder: {self.root}")
        elif not self.cells_dir.is_dir():
            raise StoreError(f"not a densbench run folder (no cells/): {self.root}")

    @property
    def cells_dir(self) -> Path:
        return self.root / CELLS

    def _clean_temporaries(self) -> None:
        """Remove temporaries left by writers that died (never a live writer's)."""
        for folder in (self.root, self.cells_dir, self.root / FLOORS):
            for tmp in folder.glob(".*.tmp"):
                if _writer_gone(tmp):
                    tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder for writing: an exclusive ``flock`` on ``<run>/.lock``, which
        names this pid, host and start time for the message of a run refused.

        The kernel holds the lock for this process and drops it when the process ends,
        however it ends, so a lock file left by a dead run is simply taken; no pid is ever
        checked. On NFS, Linux maps ``flock`` to the server's byte-range locks, which hold
        across hosts; a mount with ``nolock`` keeps locks local to one host, so a lock
        file naming another host is refused (remove it when no run is writing).
        """
        path = self.root / LOCK
        fd = self._take_lock(path)
        try:
            mine = {"pid": os.getpid(), "host": HOST,
                    "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(mine).encode(), 0)
            yield
        finally:
            # removed while still held, so that no one can lock the name's old file after
            # this one lets go (a taker checks that the name still is the file it locked)
            path.unlink(missing_ok=True)
            os.close(fd)

    def _take_lock(self, path: Path) -> int:
        """An open descriptor of ``path`` holding its exclusive lock; :class:`RunLocked`
        naming the holder when a live process holds it."""
        for _ in range(64):  # another run may remove or replace the file between two steps
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if self._locked_as_named(fd, path):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise RunLocked(f"{self.root}: could not take the lock {path}; try again")

    def _locked_as_named(self, fd: int, path: Path) -> bool:
        """Lock ``fd`` (opened from ``path``): True when it is locked and still the file
        that ``path`` names, False when its holder removed it meanwhile (take the new one);
        :class:`RunLocked` when another process holds it."""
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(self._held_message(_read_holder(path))) from None
        try:
            if not os.path.samestat(os.fstat(fd), os.stat(path)):
                return False
        except FileNotFoundError:
            return False
        holder = _read_holder(path)
        if holder is not None and holder.get("host") not in (None, HOST):
            raise RunLocked(self._held_message(holder))
        return True

    def _held_message(self, holder: dict[str, Any] | None) -> str:
        if holder is None:
            return f"{self.root} is being written by another run (lock {self.root / LOCK})"
        return (f"{self.root} is being written by another run (pid {holder.get('pid')} on "
                f"{holder.get('host')} since {holder.get('since')}); wait for it to end or "
                "choose another --out")

    def path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def has(self, cell_id: str) -> bool:
        return self.path(cell_id).is_file()

    def write(self, record: dict[str, Any]) -> Path:
        """Write one cell record atomically (replacing an older one with the same id)."""
        record = dict(_json_safe(record))
        record.setdefault("schema", SCHEMA)
        path = self.path(record["id"])
        _atomic_write_json(path, record)
        return path

    def read(self, cell_id: str) -> dict[str, Any]:
        return self._read_path(self.path(cell_id))

    def _read_path(self, path: Path) -> dict[str, Any]:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSON, UTF-8
            raise StoreError(f"malformed record {path}: {exc}") from None
        if not isinstance(rec, dict) or "id" not in rec or "status" not in rec:
            raise StoreError(f"malformed record {path}: missing id or status")
        return rec

    def records(self) -> list[dict[str, Any]]:
        """Every record, each checked (:func:`check_record`) and stored under its own id;
        the first that is not raises :class:`RecordError` naming its file and field."""
        return [self._checked(p) for p in sorted(self.cells_dir.glob("*.json"))]

    def checked_records(self) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
        """The records that pass :func:`check_record`, and (file, what is wrong) for each
        one that does not: for readers that show what they can."""
        good: list[dict[str, Any]] = []
        bad: list[tuple[Path, str]] = []
        for path in sorted(self.cells_dir.glob("*.json")):
            try:
                good.append(self._checked(path))
            except StoreError as exc:
                bad.append((path, str(exc)))
        return good, bad

    def _checked(self, path: Path) -> dict[str, Any]:
        rec = self._read_path(path)
        try:
            check_record(rec)
        except RecordError as exc:
            raise RecordError(f"invalid record {path}: {exc}") from None
        if rec["id"] != path.stem:
            raise RecordError(f"invalid record {path}: its id {rec['id']} is not its "
                              "file name")
        return rec

    def finished_ids(self, *, include_failed: bool = True) -> set[str]:
        if include_failed:
            return {p.stem for p in self.cells_dir.glob("*.json")}
        return {r["id"] for r in self.records() if r["status"] == "ok"}

    def scan(self) -> tuple[dict[str, dict[str, Any]], list[tuple[Path, str]]]:
        """Every readable record by cell id, after moving each unreadable one aside to
        ``<run>/corrupt/`` (returned as (new path, what was wrong)), so that its cell is
        run again instead of blocking the run."""
        records: dict[str, dict[str, Any]] = {}
        moved: list[tuple[Path, str]] = []
        for path in sorted(self.cells_dir.glob("*.json")):
            try:
                rec = self._read_path(path)
            except StoreError as exc:
                moved.append((self._move_aside(path), str(exc)))
                continue
            records[rec["id"]] = rec
        return records, moved

    def _move_aside(self, path: Path) -> Path:
        folder = self.root / CORRUPT
        folder.mkdir(exist_ok=True)
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        target = folder / f"{path.stem}.{stamp}.json"
        os.replace(path, target)
        return target

    def _floor_path(self, key: str) -> Path:
        return self.root / FLOORS / f"{key}.json"

    def write_floor(self, floor: dict[str, Any]) -> Path:
        """Write one floor (``floor["key"]`` names it) atomically."""
        path = self._floor_path(floor["key"])
        path.parent.mkdir(exist_ok=True)
        _atomic_write_json(path, _json_safe(floor))
        return path

    def read_floor(self, key: str) -> dict[str, Any] | None:
        """The stored floor ``key``, or None when there is none or it cannot be read (it
        is then computed again and replaced)."""
        try:
            floor = json.loads(self._floor_path(key).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        ok = isinstance(floor, dict) and floor.get("key") == key and isinstance(
            floor.get("metrics"), list)
        return floor if ok else None

    def read_manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        if not path.is_file():
            return {}
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise StoreError(f"malformed manifest {path}: {exc}") from None
        try:
            _check_manifest(manifest)
        except RecordError as exc:
            raise StoreError(f"malformed manifest {path}: {exc}") from None
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        _atomic_write_json(self.root / MANIFEST, _json_safe(manifest))


def _params_of(estimator: dict[str, Any]) -> dict[str, Any]:
    """An estimator entry's params, with its tuning candidates where it has them (a tuned
    and an untuned entry with the same fixed params are two configurations)."""
    params = dict(estimator.get("params") or {})
    if estimator.get("tune"):
        params["tune"] = estimator["tune"]["space"]
    return params


def load(path: str | Path):
    """A run's results as a tidy pandas DataFrame: one row per cell and metric.

    Columns: cell_id, estimator, params (JSON; a tuned cell's with its ``tune``
    candidates), dataset, dataset_params (JSON), seed, status, likelihood_kind, figure,
    metric, value, se, unit, note (a caveat on the figure, e.g. an untrusted Monte-Carlo SE;
    None for most), error. A failed cell has one row with ``metric`` None and its ``error``.
    Every record is checked first (:func:`check_record`): one that is not a record raises
    :class:`RecordError` naming its file. Nothing a record names is imported or called.
    """
    return frame(RunStore(path).records())


def dataset_labels(records: list[dict[str, Any]]) -> dict[str, str]:
    """Each record's dataset as tables name it (by cell id): its name; followed by its
    parameters where the run holds that name with several (``mnist {"binarize": true}``),
    and by the first 12 hex digits of the file's SHA-256 where it holds one data file (and
    parameters) with several contents, so that results of different data are never pooled
    as seeds of one configuration.

    Example:
        >>> recs = [{"id": str(i), "dataset": {"name": "m", "params": p}}
        ...         for i, p in enumerate([{}, {"binarize": True}])]
        >>> sorted(dataset_labels(recs).values())
        ['m', 'm {"binarize": true}']
    """
    def params(rec: dict[str, Any]) -> str:
        return json.dumps(rec["dataset"].get("params") or {}, sort_keys=True)

    settings: dict[str, set] = {}
    contents: dict[tuple[str, str], set] = {}
    for rec in records:
        name = rec["dataset"]["name"]
        settings.setdefault(name, set()).add(params(rec))
        contents.setdefault((name, params(rec)), set()).add(rec["dataset"].get("sha256"))
    out = {}
    for rec in records:
        name, digest = rec["dataset"]["name"], rec["dataset"].get("sha256")
        label = name
        if len(settings[name]) > 1 and params(rec) != "{}":
            label = f"{label} {params(rec)}"
        if len(contents[(name, params(rec))]) > 1:
            label = f"{label} [sha256 {digest[:12] if digest else 'unknown'}]"
        out[rec["id"]] = label
    return out


def frame(records: list[dict[str, Any]]):
    """Checked records (:func:`check_record`) as :func:`load`'s tidy DataFrame."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    datasets = dataset_labels(records)
    for rec in records:
        base = {
            "cell_id": rec["id"],
            "estimator": rec["estimator"]["name"],
            "params": json.dumps(_params_of(rec["estimator"]), sort_keys=True),
            "dataset": datasets[rec["id"]],
            "dataset_params": json.dumps(rec["dataset"].get("params") or {}, sort_keys=True),
            "seed": rec["seed"],
            "status": rec["status"],
            "likelihood_kind": rec.get("likelihood_kind"),
            "figure": rec.get("figure"),
            "error": rec.get("error"),
        }
        metrics = rec.get("metrics") or []
        if not metrics:
            rows.append({**base, "metric": None, "value": math.nan, "se": math.nan,
                         "unit": None, "note": None})
        for m in metrics:
            rows.append({**base, "metric": m["metric"],
                         "value": math.nan if m.get("value") is None else m["value"],
                         "se": math.nan if m.get("se") is None else m["se"],
                         "unit": m.get("unit"), "note": m.get("note")})
    columns = ["cell_id", "estimator", "params", "dataset", "dataset_params", "seed", "status",
               "likelihood_kind", "figure", "metric", "value", "se", "unit", "note", "error"]
    df = pd.DataFrame(rows, columns=columns)
    return df.sort_values(["dataset", "estimator", "params", "seed", "metric"],
                          na_position="first").reset_index(drop=True)


def load_per_example(path: str | Path, split: str = "test") -> dict[str, np.ndarray]:
    """Per-example log-likelihoods stored in each ok record, by cell id."""
    return per_example(RunStore(path).records(), split)


def per_example(records: list[dict[str, Any]], split: str = "test") -> dict[str, np.ndarray]:
    """:func:`load_per_example` of checked records (:func:`check_record`)."""
    out = {}
    for rec in records:
        enc = (rec.get("per_example") or {}).get(f"{split}_loglik")
        if enc:
            out[rec["id"]] = decode_array(enc)
    return out
