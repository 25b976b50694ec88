"""The driver: runs cells through an executor and writes their records as they end.

:func:`~densbench.runner.cell.run_cell` is a pure function of a cell; the executors
(:mod:`densbench.runner.executors`) decide where it runs; :func:`run_cells` is the only
caller of the store's writer, so records are written by one process, and it holds the run
folder's lock while it runs. A first Ctrl-C (SIGINT) stops handing out cells and lets the
running ones finish and be written; a second stops them too. Either way the run ends with
``RunSummary.interrupted`` set and every finished record on disk.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densbench.metrics.catalogue import COST_METRICS
from densbench.runner.cell import now, run_cell
from densbench.runner.executors import EXECUTORS, RunOptions, StopFlag, make_executor
from densbench.runner.plan import Cell
from densbench.runner.store import RunStore

__all__ = ["COST_METRICS", "EXECUTORS", "Progress", "RunOptions", "RunSummary", "run_cell",
           "run_cells", "run_options", "run_suite"]


@dataclass
class Progress:
    """An event for the progress callback: a cell finished (or was skipped)."""

    done: int
    total: int
    cell: Cell
    status: str


@dataclass
class RunSummary:
    """What a run did: cells run ok or not, cells already recorded (and how many of those
    failed or timed out), records moved aside as corrupt, and whether it was interrupted."""

    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    earlier_failed: list[dict[str, Any]] = field(default_factory=list)
    moved_aside: list[tuple[Path, str]] = field(default_factory=list)
    interrupted: bool = False
    #: seconds this run spent computing sample-metric floors (:mod:`densbench.runner.floors`)
    floor_seconds: float = 0.0

    @property
    def n_failed(self) -> int:
        """Failed or timed-out records of the run: this time's and those already there."""
        return len(self.failed) + len(self.earlier_failed)


@contextlib.contextmanager
def _first_interrupt_stops(stop: StopFlag) -> Iterator[None]:
    """In the main thread: the first SIGINT sets ``stop.requested`` (no new cells), the
    second sets ``stop.forced`` (running cells are stopped too) and raises
    KeyboardInterrupt only while ``stop.watched`` is False. Elsewhere a signal's exception
    lands on whatever line runs: in an import beside the thread that writes records, it
    can leave the import half done and the process unable to exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            stop.forced = True
            if not stop.watched:
                raise KeyboardInterrupt
        stop.requested = True

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _todo(cells: list[Cell], store: RunStore, summary: RunSummary,
          retry_failed: bool) -> list[Cell]:
    """The cells still to run, longest first (:mod:`densbench.runner.schedule`); the others
    are counted as skipped (failed ones apart)."""
    from densbench.runner.schedule import longest_first

    records, summary.moved_aside = store.scan()
    todo = []
    for cell in cells:
        rec = records.get(cell.id)
        if rec is None or (retry_failed and rec["status"] != "ok"):
            todo.append(cell)
        elif rec["status"] != "ok":
            summary.earlier_failed.append(rec)
    summary.skipped = len(cells) - len(todo)
    return longest_first(todo, records.values())


def run_options(options: RunOptions | None = None, **settings: Any) -> RunOptions:
    """``options`` (default: :class:`RunOptions`' defaults) with the fields named in
    ``settings`` replaced; a name that is no field is a TypeError, a bad value a
    ValueError.

    Example:
        >>> run_options(workers=2).workers, run_options(RunOptions(device="cuda")).device
        (2, 'cuda')
    """
    import dataclasses

    return dataclasses.replace(options or RunOptions(), **settings)


def run_cells(cells: list[Cell], store: RunStore, options: RunOptions | None = None, *,
              on_progress: Callable[[Progress], None] | None = None,
              **settings: Any) -> RunSummary:
    """Run every cell not yet recorded in ``store``; write each record as it finishes.

    ``options`` (or the same fields as keywords, e.g. ``workers=2``: see
    :func:`run_options`) say how. ``executor="local"`` runs the cells in ``workers``
    supervised worker processes (limits enforced, a crash fails its cell only);
    ``executor="dask"`` submits them to the Dask scheduler at ``scheduler``
    (``tcp://host:8786``) or, without an address, to a LocalCluster of ``workers``
    processes; ``executor="inprocess"`` runs them in this process, for a debugger (no
    limits; a crash ends the run). ``device`` (``cpu``, ``cuda``, ``cuda:N``) is where
    estimators that take a device run; with ``cuda`` the workers share out the GPUs in
    turn. Whatever the executor, this process alone writes the records, holding the run
    folder's lock (:class:`~densbench.runner.store.RunLocked` if another run holds it).
    """
    options = run_options(options, **settings)
    stop = StopFlag()
    with store.lock(), _first_interrupt_stops(stop):
        return _run_locked(cells, store, options, on_progress, stop)


class _Recorder:
    """The executors' ``finish``: adds a record's floor, writes it, counts it and reports
    progress, in the order the cells end. Beside an executor that watches cells in other
    processes this runs on a thread of its own, so that a floor (seconds of computing in
    this process) never holds up the loop that checks the cells' limits; beside cells that
    run in this process and thread it runs in line, between them. An error here (a full
    disk) is raised to the executor at its next ``finish`` and by :meth:`close`."""

    def __init__(self, store: RunStore, summary: RunSummary, total: int, threads: int,
                 on_progress: Callable[[Progress], None] | None, *,
                 background: bool) -> None:
        from densbench.runner.floors import Floors

        self.store, self.summary, self.total = store, summary, total
        self.on_progress, self.done = on_progress, summary.skipped
        self.floors = Floors(store, threads=threads)
        #: set by the run's second Ctrl-C or a Ctrl-C while :meth:`close` waits: no more
        #: floors are computed
        self.hurry = False
        self._error: BaseException | None = None
        self._queue: queue.SimpleQueue | None = None
        if background:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._drain,
                                            name="densbench-records", daemon=True)
            self._thread.start()

    def __call__(self, cell: Cell, record: dict[str, Any]) -> None:
        if self._error is not None:
            raise self._error
        if self._queue is None:
            self._finish(cell, record)
        else:
            self._queue.put((cell, record))

    def _finish(self, cell: Cell, record: dict[str, Any]) -> None:
        self.floors.attach(cell, record, compute=not self.hurry)
        self.summary.floor_seconds = self.floors.seconds
        self.store.write(record)
        self.done += 1
        if record["status"] == "ok":
            self.summary.ok += 1
        else:
            self.summary.failed.append(record)
        if self.on_progress:
            self.on_progress(Progress(self.done, self.total, cell, record["status"]))

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._finish(*item)
                except BaseException as exc:  # raised in the driver's thread instead
                    self._error = exc

    def close(self) -> None:
        """Wait until every record handed over is written. A Ctrl-C meanwhile lets the
        floor being computed finish and computes no more (the records still waiting are
        written without theirs, noting why); a second one gives up on them."""
        if self._queue is not None:
            self._queue.put(None)
            interrupted = False
            while self._thread.is_alive():
                try:
                    self._thread.join(0.2)
                except KeyboardInterrupt:
                    if interrupted:
                        raise
                    interrupted = self.hurry = True
        if self._error is not None:
            raise self._error


def _run_locked(cells: list[Cell], store: RunStore, options: RunOptions,
                on_progress: Callable[[Progress], None] | None, stop: StopFlag) -> RunSummary:
    """The cells of a locked run folder, with the driver's Ctrl-C handled by ``stop``: a
    Ctrl-C during the set-up stops the run before its first cell."""
    summary = RunSummary(total=len(cells))
    runner = make_executor(cells, options)
    todo = _todo(cells, store, summary, options.retry_failed)
    # between cells in this process, floors take the cells' threads; beside workers that
    # hold the cores, one thread (which also never waits at a barrier for a thread the
    # OS has put aside)
    in_driver = getattr(runner, "in_driver", False)
    recorder = _Recorder(store, summary, len(cells),
                         options.threads_per_worker if in_driver else 1, on_progress,
                         background=not in_driver)
    try:
        if not stop.requested:
            stop.watched = getattr(runner, "watches_stop", False)
            runner.run(todo, recorder, stop)
    except KeyboardInterrupt:
        stop.requested = True
    finally:
        stop.watched = True
        # stopped by a second Ctrl-C: the records still waiting are written without the
        # floors not yet computed (each says so), not after minutes of computing them
        recorder.hurry = recorder.hurry or stop.forced
        recorder.close()
    summary.interrupted = stop.requested
    return summary


# -- a whole run: manifest + cells ----------------------------------------------------

def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("densbench", "torch", "numpy", "scipy", "scikit-learn", "pandas"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def _git(*args: str) -> str | None:
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _git_commit() -> str | None:
    """HEAD of the densbench checkout, with ``+dirty`` when it has uncommitted changes."""
    head = _git("rev-parse", "HEAD")
    if not head:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return head + ("+dirty" if status else "")


def _machine() -> dict[str, Any]:
    import platform

    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "hostname": platform.node()}


def _narrowed_from(suite: Any) -> dict[str, int] | None:
    """The sizes of the suite as written where the command line changed what runs (so
    that a report says what the run is); None where it runs as written."""
    first = getattr(suite, "restricted_from", None)
    keys = ("estimators", "datasets", "seeds")
    if first is None or all(getattr(first, k) == getattr(suite, k) for k in keys):
        return None
    return {k: len(getattr(first, k)) for k in keys}


def run_suite(suite: Any, store: RunStore, options: RunOptions | None = None, *,
              command: str = "", on_progress: Callable[[Progress], None] | None = None,
              **settings: Any) -> RunSummary:
    """Run ``suite`` into ``store``: manifest first, then cells (resuming), then the end time,
    all under the run folder's lock. ``options`` and ``settings`` as for :func:`run_cells`;
    the manifest records them with ``command``."""
    options = run_options(options, **settings)
    stop = StopFlag()
    with store.lock(), _first_interrupt_stops(stop):
        manifest = store.read_manifest()
        invocation = {"command": command, "started": now(), "finished": None,
                      "workers": options.workers, "executor": options.executor,
                      "scheduler": options.scheduler, "device": options.device,
                      "compile": options.compile,
                      "suite": suite.name, "n_cells": len(suite.cells())}
        manifest.update({
            "schema": 1,
            "suite": {"name": suite.name, "source": suite.source, "seeds": list(suite.seeds),
                      "estimators": [s.to_dict() for s in suite.estimators],
                      "datasets": [s.to_dict() for s in suite.datasets],
                      "cell_timeout_s": suite.cell_timeout_s,
                      "cell_wall_timeout_s": suite.cell_wall_timeout_s,
                      "cell_memory_mb": suite.cell_memory_mb,
                      "narrowed_from": _narrowed_from(suite)},
            "versions": _versions(), "git_commit": _git_commit(), "machine": _machine(),
        })
        manifest.setdefault("invocations", []).append(invocation)
        store.write_manifest(manifest)
        summary = _run_locked(suite.cells(), store, options, on_progress, stop)
        invocation.update(finished=now(), ok=summary.ok, failed=summary.n_failed,
                          skipped=summary.skipped, interrupted=summary.interrupted,
                          floor_seconds=summary.floor_seconds)
        store.write_manifest(manifest)
    return summary
