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
import contextlib
import datetime as _dt
import json
import math
import os
import socket
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunLocked", "RunStore", "StoreError", "decode_array", "encode_array", "load"]

MANIFEST = "manifest.json"
CELLS = "cells"
FLOORS = "floors"
LOCK = ".lock"
CORRUPT = "corrupt"
SCHEMA = 1
#: This process's host, as lock files and temporaries name it.
HOST = socket.gethostname()


class StoreError(ValueError):
    """A run folder that cannot be used (missing, not a run, malformed record)."""


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
    raw = zlib.decompress(base64.b64decode(obj["data"]))
    return np.frombuffer(raw, dtype=obj.get("dtype", "<f8")).copy()


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
        """Hold the run folder for writing: ``<run>/.lock`` names this pid and host.

        A lock whose holder is a process on this host that no longer exists is stale and
        taken over; any other lock raises :class:`RunLocked` naming its holder.
        """
        path = self.root / LOCK
        mine = {"pid": os.getpid(), "host": HOST,
                "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                self._check_lock_stale(path)
        else:
            raise RunLocked(f"{self.root} is being written by another run (lock {path})")
        with os.fdopen(fd, "w") as fh:
            json.dump(mine, fh)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def _check_lock_stale(self, path: Path) -> None:
        """Remove the lock at ``path`` if its holder is gone; raise if it is alive."""
        try:
            holder = json.loads(path.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError):
            raise RunLocked(f"{self.root} is locked by {path}, which cannot be read; remove "
                            "it if no run is writing into this folder") from None
        if host != HOST or _alive(pid):
            raise RunLocked(f"{self.root} is being written by another run (pid {pid} on "
                            f"{host} since {holder.get('since')}); wait for it to end or "
                            "choose another --out")
        path.unlink(missing_ok=True)  # a stale lock: its holder died on this host

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
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"malformed record {path}: {exc}") from None
        if not isinstance(rec, dict) or "id" not in rec or "status" not in rec:
            raise StoreError(f"malformed record {path}: missing id or status")
        return rec

    def records(self) -> list[dict[str, Any]]:
        return [self._read_path(p) for p in sorted(self.cells_dir.glob("*.json"))]

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
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"malformed manifest {path}: {exc}") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        _atomic_write_json(self.root / MANIFEST, _json_safe(manifest))


def _params_of(estimator: dict[str, Any]) -> dict[str, Any]:
    """An estimator entry's params, with its tuning candidates where it has them (a tuned
    and an untuned entry with the same fixed params are two configurations)."""
    params = dict(estimator.get("params", {}))
    if estimator.get("tune"):
        params["tune"] = estimator["tune"]["space"]
    return params


def load(path: str | Path):
    """A run's results as a tidy pandas DataFrame: one row per cell and metric.

    Columns: cell_id, estimator, params (JSON; a tuned cell's with its ``tune``
    candidates), dataset, dataset_params (JSON), seed, status, likelihood_kind, figure,
    metric, value, se, unit, note (a caveat on the figure, e.g. an untrusted Monte-Carlo SE;
    None for most), error. A failed cell has one row with ``metric`` None and its ``error``.
    """
    import pandas as pd

    store = RunStore(path)
    rows: list[dict[str, Any]] = []
    for rec in store.records():
        base = {
            "cell_id": rec["id"],
            "estimator": rec["estimator"]["name"],
            "params": json.dumps(_params_of(rec["estimator"]), sort_keys=True),
            "dataset": rec["dataset"]["name"],
            "dataset_params": json.dumps(rec["dataset"].get("params", {}), sort_keys=True),
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
    out = {}
    for rec in RunStore(path).records():
        enc = (rec.get("per_example") or {}).get(f"{split}_loglik")
        if enc:
            out[rec["id"]] = decode_array(enc)
    return out
