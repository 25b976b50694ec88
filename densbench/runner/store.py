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
``<run>/corrupt/`` (:meth:`RunStore.scan`) so that its cell runs again. Records are read
only through :func:`~densbench.runner.records.check_record`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePath
from typing import Any, BinaryIO

import numpy as np

from densbench.runner.records import (
    CELL_ID,
    RecordError,
    StoreError,
    check_manifest,
    check_record,
    decode_array,
    encode_array,
)

__all__ = ["CELL_ID", "COLUMNS", "DTYPES", "RecordError", "RunLocked", "RunStore", "StoreError",
           "atomic_write", "check_record", "dataset_labels", "decode_array", "encode_array",
           "frame", "load", "load_per_example", "per_example", "run_labels"]

MANIFEST = "manifest.json"
CELLS = "cells"
FLOORS = "floors"
LOCK = ".lock"
CORRUPT = "corrupt"
SCHEMA = 1
#: This process's host, as lock files and temporaries name it.
HOST = socket.gethostname()


class RunLocked(StoreError):
    """Another live run is writing into the folder."""


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


def atomic_write(path: Path, write: Callable[[BinaryIO], Any], *,
                 mode: int | None = None) -> None:
    """Make ``path`` hold what ``write`` writes to a binary file, all or nothing: written to
    a temporary beside it, synced, then renamed over it; the temporary is removed if
    ``write`` fails or is interrupted. ``mode``: the file's permission bits (default: the
    temporary's, readable by this user only)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}~{HOST}~{os.getpid()}~", suffix=".tmp",
                               dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, sort_keys=False, allow_nan=False)
    atomic_write(path, lambda fh: fh.write(text.encode()))


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
            check_manifest(manifest)
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


#: The columns of :func:`load`'s table, in order; the first three are facts of the run.
COLUMNS = ("run", "commit", "machine", "device", "estimator", "params", "dataset",
           "dataset_params", "data_kind", "seed", "cell_id", "status", "likelihood_kind",
           "figure", "metric", "value", "se", "unit", "note", "error")
_RUN_COLUMNS = COLUMNS[:3]
#: The dtypes of :func:`load`'s numeric columns; every other column holds str or None.
DTYPES = {"seed": "int64", "value": "float64", "se": "float64"}


def load(*runs: str | Path | Sequence[str | Path]):
    """Runs' results as one tidy pandas DataFrame: one row per cell and metric.

    ``load("results/a")``, ``load("results/a", "results/b")`` or ``load([a, b])``.
    Columns (:data:`COLUMNS`): run (the run folder's name, with parent folders where two
    runs share a name: :func:`run_labels`), commit and machine (the git commit and hostname
    in the run's manifest; None without one), device (where the cell ran), estimator,
    params (JSON; a tuned cell's with its ``tune`` candidates), dataset, dataset_params
    (JSON), data_kind ("continuous" or "discrete"), seed, cell_id, status,
    likelihood_kind, figure (what the value of a likelihood is a figure of), metric, value,
    se, unit (as the record states it), note (a caveat on the figure, e.g. an untrusted
    Monte-Carlo SE; None for most), error. A failed cell has one row with ``metric`` None
    and its ``error``. Every record is checked first (:func:`check_record`): one that is
    not a record raises :class:`RecordError` naming its file. Nothing a record names is
    imported or called.
    """
    import pandas as pd

    paths = _run_paths(runs)
    tables = [_run_table(RunStore(path), label)
              for path, label in zip(paths, run_labels(paths), strict=True)]
    full = [t for t in tables if not t.empty] or tables[:1]
    df = pd.concat(full, ignore_index=True).astype(DTYPES)
    # Text columns in the installed pandas's own text dtype (str in pandas 3, object
    # before) whatever the runs hold (a column of None alone would be object), so that a
    # column's dtype does not depend on which runs are read together, and a table read
    # back from an export equals this one.
    text = [c for c in COLUMNS if c not in DTYPES]
    df[text] = df[text].astype(object).where(df[text].notna(), None).astype(
        pd.Series(["text"]).dtype)
    return df


def _run_paths(runs: tuple[Any, ...]) -> list[Path]:
    """The run folders of :func:`load`'s arguments (folders, or one list of them)."""
    if len(runs) == 1 and isinstance(runs[0], list | tuple):
        runs = tuple(runs[0])
    if not runs:
        raise StoreError("no run folder given")
    return [Path(r) for r in runs]


def _run_table(store: RunStore, label: str):
    """One run's :func:`frame` with the run's own columns (its label, commit, machine)."""
    manifest = store.read_manifest()
    df = frame(store.records())
    facts = (label, manifest.get("git_commit"), (manifest.get("machine") or {}).get("hostname"))
    for column, value in zip(_RUN_COLUMNS, facts, strict=True):
        df[column] = value
    return df[list(COLUMNS)]


def run_labels(paths: Sequence[str | Path]) -> list[str]:
    """Each run folder's name as tables show it: its own name, with as many of its parent
    folders as tell it apart from the other runs'; :class:`StoreError` for a folder given
    twice.

    Example:
        >>> run_labels(["/r/a/run", "/r/b/run", "/r/c"])
        ['a/run', 'b/run', 'c']
    """
    parts = [Path(p).resolve().parts for p in paths]
    for i, mine in enumerate(parts):
        if mine in parts[:i]:
            raise StoreError(f"run folder given twice: {paths[i]}")
    labels = []
    for mine in parts:
        k = next(k for k in range(1, len(mine) + 1)
                 if sum(other[-k:] == mine[-k:] for other in parts) == 1)
        labels.append(PurePath(*mine[-k:]).as_posix())
    return labels


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
    """Checked records (:func:`check_record`) of one run as :func:`load`'s tidy DataFrame,
    less the run's own columns (run, commit, machine)."""
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
            "data_kind": ((rec.get("data") or {}).get("info") or {}).get("kind"),
            "seed": rec["seed"],
            "device": rec.get("device"),
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
    columns = [c for c in COLUMNS if c not in _RUN_COLUMNS]
    df = pd.DataFrame(rows, columns=columns).astype(DTYPES)
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
