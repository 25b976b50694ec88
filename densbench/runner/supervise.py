"""A worker process under supervision: the one mechanism behind time and memory limits.

A cell runs in a child process (:mod:`densbench.runner.worker`) that its supervisor
watches from outside, and stops with SIGKILL at the first limit it passes:

- **CPU time** (``Cell.timeout_s``, a suite's ``cell_timeout_s``): the CPU seconds of the
  worker process (user + system, every thread, read from ``/proc/<pid>/stat``) since the
  cell started in it, divided by the threads the worker was given. The worker's start-up
  (the interpreter, PyTorch and densbench's own imports) comes before the cell starts: it
  is recorded apart (``usage.startup_seconds``), never charged to a cell. A CPU budget
  measures the cell, not the machine: on a machine shared with other work a cell gets
  less of each wall-clock second, so a wall-clock limit fires on cells that would finish
  in time on their own; their CPU seconds stay what the work costs.
- **Wall clock** (``Cell.wall_timeout_s``, ``cell_wall_timeout_s``; by default
  :data:`WALL_FACTOR` x the CPU budget): a generous backstop for a cell that waits without
  computing (a deadlock, a sleep, a read that never returns), which no CPU budget sees.
- **Memory** (``Cell.memory_mb``): the process's resident memory.

Why divide by threads: a cell on T threads that keeps them busy uses T CPU seconds per
wall-clock second, so CPU seconds / T reads in the seconds a suite's author measured on an
idle machine (the budget stays the number they wrote, whatever the worker's thread count);
a cell that uses fewer threads than it was given gets that much more room, never less.
Where ``/proc`` cannot be read (not Linux), the budget is applied to wall-clock seconds.

The record says which limit fired (``usage.limit``: ``"cpu"``, ``"wall"``, ``"memory"``)
and what the cell used (``usage``: CPU and wall seconds, threads, start-up seconds). A
child that dies (the kernel's OOM killer, a crash, a ``kill -9``) fails only the cell it
ran, and its record keeps what the process left: the exit code or signal, and the end of
its stderr (a worker's stderr goes to a file of its own), where Python's fault handler
writes the stack of a crash; a cell stopped at a limit keeps the stack it was stopped in.
Either way the next cell gets a fresh child. So a limit holds whatever the cell's code
does (compiled code that never returns to Python, a thread pool that finishes its blocks
first) and never leaves a process half-broken, as a signal raised inside an import would.
The local pool runs one supervisor per worker; under Dask each task supervises a child in
the Dask worker. A worker dies with its supervisor (see :mod:`densbench.runner.worker`).
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import IO, Any

from densbench.devices import DEFAULT_DEVICE, check_device
from densbench.runner.cell import failure_record, now
from densbench.runner.plan import Cell
from densbench.runner.processes import STARTUP_LIMIT_S, WALL_FACTOR, process_cpu_seconds

__all__ = ["STARTUP_LIMIT_S", "WALL_FACTOR", "SupervisedWorker", "assign_devices",
           "cell_limits", "check_device", "describe_exit", "local_devices",
           "process_cpu_seconds", "resident_mb", "usage_since"]

#: The folder that holds this densbench package: workers import the same code.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: How long a worker asked to stop gets before it is killed (seconds).
STOP_GRACE_S = 2.0
#: How long a worker that closed its connection gets to exit before it is killed (s).
EXIT_GRACE_S = 10.0
#: How long a cell stopped at a limit gets to write the stack it is in (seconds).
DUMP_WAIT_S = 0.5
#: The end of a dead worker's stderr that its cell's record keeps (characters).
STDERR_TAIL = 8000



def assign_devices(device: str, n_workers: int, n_gpus: int) -> list[str]:
    """The device of each of ``n_workers`` workers for a run on ``device``.

    ``"cpu"`` and ``"cuda:N"`` are the same for every worker; ``"cuda"`` gives the workers
    the ``n_gpus`` GPUs in turn (worker i on ``cuda:{i % n_gpus}``), so that several
    workers share out several GPUs instead of all crowding onto the first.

    Example:
        >>> assign_devices("cuda", 3, 2)
        ['cuda:0', 'cuda:1', 'cuda:0']
    """
    kind, _, index = check_device(device).partition(":")
    if kind == "cpu":
        return ["cpu"] * n_workers
    if n_gpus < 1:
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if index and int(index) >= n_gpus:
        raise ValueError(f"device {device!r} requested but this machine has {n_gpus} "
                         f"CUDA device(s): cuda:0..cuda:{n_gpus - 1}")
    if index:
        return [device] * n_workers
    return [f"cuda:{i % n_gpus}" for i in range(n_workers)]


def local_devices(device: str, n_workers: int) -> list[str]:
    """:func:`assign_devices` over this machine's GPUs (torch is imported only for CUDA)."""
    n_gpus = 0
    if device != "cpu":
        import torch

        n_gpus = torch.cuda.device_count()
    return assign_devices(device, n_workers, n_gpus)


def describe_exit(returncode: int | None) -> str:
    """Why a worker process ended, for the record of the cell it ran (``None``: it closed
    its connection but did not exit, and was killed)."""
    if returncode is None:
        return (f"worker process closed its connection and did not exit within "
                f"{EXIT_GRACE_S:g} s; killed")
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if returncode == -signal.SIGKILL else ""
        return f"worker process killed by {name}{hint}"
    return f"worker process exited with code {returncode}"


def resident_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (from /proc; None where unavailable)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cell_limits(cell: Cell) -> tuple[float | None, float | None]:
    """A cell's CPU budget (CPU seconds per thread) and its wall-clock limit (seconds),
    None where there is none: the wall-clock limit defaults to :data:`WALL_FACTOR` x the
    CPU budget."""
    wall = cell.wall_timeout_s
    if wall is None and cell.timeout_s is not None:
        wall = WALL_FACTOR * cell.timeout_s
    return cell.timeout_s, wall


def usage_since(start: dict[str, Any], cpu: float | None, clock: float) -> dict[str, Any]:
    """What a cell used from ``start`` (the worker's ``started`` message: its process's
    CPU seconds, ``time.monotonic()`` and threads then) to ``cpu`` and ``clock`` now."""
    threads = max(1, int(start["threads"]))
    used = None if cpu is None or start["cpu"] is None else max(0.0, cpu - start["cpu"])
    return {"cpu_seconds": used, "threads": threads,
            "cpu_seconds_per_thread": None if used is None else used / threads,
            "wall_seconds": max(0.0, clock - start["clock"])}


class _Spawner:
    """Starts worker processes from one thread that lives as long as this process.

    A worker asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``), and
    the kernel takes the parent to be the *thread* that forked it: a worker forked by a
    thread that ends before the process (a Dask worker's task thread, a caller's own
    short-lived thread) would be killed in the middle of a cell. Forked from this thread,
    a worker dies when the process does, and only then.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue | None = None
        self._pid: int | None = None

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen:
        """``subprocess.Popen(args, **kwargs)``, forked by the spawning thread."""
        with self._lock:
            if self._pid != os.getpid():  # none yet, or a forked copy of this process
                self._queue, self._pid = queue.SimpleQueue(), os.getpid()
                threading.Thread(target=self._serve, args=(self._queue,), daemon=True,
                                 name="densbench-spawner").start()
            jobs = self._queue
        done: Future = Future()
        jobs.put((done, args, kwargs))
        return done.result()

    @staticmethod
    def _serve(jobs: queue.SimpleQueue) -> None:
        while True:
            done, args, kwargs = jobs.get()
            try:
                done.set_result(subprocess.Popen(args, **kwargs))
            except BaseException as exc:  # the caller's error; this thread must live on
                done.set_exception(exc)


_SPAWNER = _Spawner()


class SupervisedWorker:
    """One worker process and the cell it runs; started on the first :meth:`submit` and
    after every death."""

    def __init__(self, *, device: str = DEFAULT_DEVICE, threads: int = 0,
                 compile: bool = False) -> None:
        self.device, self.threads, self.compile = device, threads, compile
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.cell: Cell | None = None
        self._stderr: IO[bytes] | None = None
        self._spawned = 0.0  # time.monotonic() when the process was started
        self._fresh = False  # no cell has started in the process yet
        self._reset_cell()

    def _reset_cell(self) -> None:
        self._submitted = 0.0
        self._started: str | None = None
        self._begun: dict[str, Any] | None = None  # the worker's "started" message
        self._startup: float | None = None
        self._eof_at: float | None = None

    # -- life cycle --------------------------------------------------------------------
    def _start(self) -> None:
        mine, theirs = socket.socketpair()
        # OpenMP threads that wait at a barrier by spinning (libgomp's default, PyTorch's
        # on Linux) burn the CPU time they wait for when the machine is busy: a cell's CPU
        # time, and its wall time, would grow many times over with the load. Passive
        # waits sleep instead. A user's own setting is kept.
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ,
               "DENSBENCH_SUPERVISOR_PID": str(os.getpid()),
               "PYTHONPATH": os.pathsep.join([_PACKAGE_ROOT, *filter(None, [
                   os.environ.get("PYTHONPATH")])])}
        self._stderr = tempfile.TemporaryFile("a+b")  # appends wherever it is read
        try:
            self.proc = _SPAWNER.popen(
                [sys.executable, "-m", "densbench.runner.worker", str(theirs.fileno()),
                 str(self.threads), self.device, *(["compile"] if self.compile else [])],
                pass_fds=(theirs.fileno(),), env=env, process_group=0,
                stdin=subprocess.DEVNULL, stderr=self._stderr)
        finally:
            theirs.close()
        self.conn = Connection(mine.detach())
        self._spawned, self._fresh = time.monotonic(), True

    def kill(self) -> None:
        """End the worker now (SIGKILL) and wait for it."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.conn.close()
            self._stderr.close()
        self.proc = self.conn = self._stderr = None

    def close(self) -> None:
        """Ask an idle worker to exit; kill it if it is busy or does not exit in time."""
        if self.proc is not None and self.cell is None:
            try:
                self.conn.send(None)
                self.proc.wait(STOP_GRACE_S)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    @property
    def listening(self) -> bool:
        """Whether the worker's connection may still bring messages (worth waiting on)."""
        return self.conn is not None and self._eof_at is None

    # -- one cell ------------------------------------------------------------------------
    def submit(self, cell: Cell) -> None:
        """Send ``cell`` to the worker, starting a fresh one if there is none or it died
        while idle."""
        if self.proc is not None and self.proc.poll() is not None:
            self.kill()
        if self.proc is None:
            self._start()
        self._stderr.truncate(0)  # the record of a death keeps this cell's output only
        self._reset_cell()
        self.cell, self._started, self._submitted = cell, now(), time.monotonic()
        try:
            self.conn.send(cell)
        except OSError:  # it died just now: the next poll records how
            self._eof_at = time.monotonic()

    def poll(self, on_epoch: Callable[[dict], None] | None = None) -> dict[str, Any] | None:
        """The record of the running cell if it has ended (finished, died, over a limit),
        else None. Never blocks."""
        try:
            while self.listening and self.conn.poll():
                kind, payload = self.conn.recv()
                if kind == "record":
                    return self._done(payload)
                if kind == "started":
                    self._on_started(payload)
                elif kind == "epoch" and on_epoch is not None:
                    on_epoch(payload)
        except (EOFError, OSError):  # it died or is dying: its exit code tells how
            self._eof_at = time.monotonic()
        return self._check_limits()

    def _on_started(self, start: dict[str, Any]) -> None:
        self._begun = start
        if self._fresh:
            self._startup, self._fresh = max(0.0, start["clock"] - self._spawned), False

    def _usage(self, limit: str | None = None) -> dict[str, Any]:
        """What the running cell has used so far (the limit that stopped it, if any)."""
        if self._begun is None:
            usage = {"cpu_seconds": None, "threads": None, "cpu_seconds_per_thread": None,
                     "wall_seconds": None}
        else:
            usage = usage_since(self._begun, process_cpu_seconds(self.proc.pid),
                                time.monotonic())
        return {**usage, "startup_seconds": self._startup, "limit": limit}

    def _check_limits(self) -> dict[str, Any] | None:
        over = self._over_limit()
        if over is not None:
            return over
        code = self.proc.poll()
        if code is not None:
            return self._fail("failed", describe_exit(code), dump=False)
        if self._eof_at is not None and time.monotonic() - self._eof_at > EXIT_GRACE_S:
            return self._fail("failed", describe_exit(None), dump=False)
        return None

    def _over_limit(self) -> dict[str, Any] | None:
        """The record of a cell over its CPU, wall-clock, start-up or memory limit."""
        cell, budget_s, wall_s = self.cell, *cell_limits(self.cell)
        if self._begun is None:
            if time.monotonic() - self._submitted > STARTUP_LIMIT_S:
                return self._fail("failed", f"the worker process did not take up the cell "
                                            f"within {STARTUP_LIMIT_S:g} s")
        else:
            used = self._usage()
            cpu = used["cpu_seconds_per_thread"]
            if budget_s is not None and (cpu if cpu is not None
                                         else used["wall_seconds"]) > budget_s:
                return self._fail("timeout", f"cell exceeded its CPU-time budget of "
                                             f"{budget_s:g} s per thread", limit="cpu")
            if wall_s is not None and used["wall_seconds"] > wall_s:
                return self._fail("timeout", f"cell exceeded its wall-clock limit of "
                                             f"{wall_s:g} s", limit="wall")
        if cell.memory_mb is not None:
            rss = resident_mb(self.proc.pid)
            if rss is not None and rss > cell.memory_mb:
                return self._fail("failed", f"out of memory: the cell's process used "
                                            f"{rss:.0f} MB, over the cell memory limit of "
                                            f"{cell.memory_mb:g} MB", limit="memory")
        return None

    def _dump_stack(self) -> None:
        """Have the worker write every thread's stack to its stderr (its fault handler
        does so on SIGUSR1, even while compiled code holds the GIL) before it is killed."""
        try:
            before = os.fstat(self._stderr.fileno()).st_size
            os.kill(self.proc.pid, signal.SIGUSR1)
        except OSError:
            return
        deadline, size = time.monotonic() + DUMP_WAIT_S, before
        while time.monotonic() < deadline:
            time.sleep(0.02)
            grown = os.fstat(self._stderr.fileno()).st_size
            if grown > before and grown == size:  # written, and no longer growing
                return
            size = grown

    def _stderr_tail(self) -> str | None:
        """The last :data:`STDERR_TAIL` characters the worker wrote to stderr during the
        cell, or None if it wrote nothing."""
        fh = self._stderr
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 4 * STDERR_TAIL))
        text = fh.read().decode("utf-8", "replace")[-STDERR_TAIL:].strip()
        return text or None

    def _fail(self, status: str, error: str, limit: str | None = None,
              dump: bool = True) -> dict[str, Any]:
        pid, usage = self.proc.pid, self._usage(limit)
        if dump and self.proc.poll() is None:
            self._dump_stack()
        tail = self._stderr_tail()
        self.kill()
        extra = {"traceback": f"the worker process's stderr, last lines:\n{tail}"} \
            if tail else {}
        return self._done(failure_record(self.cell, status, error, started=self._started,
                                         pid=pid, device=self.device, usage=usage, **extra))

    def _done(self, record: dict[str, Any]) -> dict[str, Any]:
        usage = record.setdefault("usage", {})  # the worker measured what the cell used
        usage.setdefault("startup_seconds", self._startup)
        usage.setdefault("limit", None)
        self.cell = None
        self._reset_cell()
        return record

    def run(self, cell: Cell, poll_s: float = 0.1) -> dict[str, Any]:
        """Run one cell to its end and return its record (blocking)."""
        self.submit(cell)
        while (record := self.poll()) is None:
            if self.listening:
                wait([self.conn], poll_s)
            else:
                time.sleep(poll_s)
        return record
