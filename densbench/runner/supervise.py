"""A worker process under supervision: the one mechanism behind time and memory limits.

A cell runs in a child process (:mod:`densbench.runner.worker`) that its supervisor
watches from outside: at the cell's time limit, or when the child's resident memory
passes the cell's memory limit, the child is killed with SIGKILL and the cell recorded as
"timeout" or "out of memory"; a child that dies (the kernel's OOM killer, a crash, a
``kill -9``) fails only the cell it ran. Either way the next cell gets a fresh child. So a
limit holds whatever the cell's code does (compiled code that never returns to Python, a
thread pool that finishes its blocks first) and never leaves a process half-broken, as a
signal raised inside an import would. The local pool runs one supervisor per worker; under
Dask each task supervises a child in the Dask worker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from densbench.runner.cell import failure_record, now
from densbench.runner.plan import Cell

__all__ = ["SupervisedWorker", "assign_devices", "check_device", "describe_exit",
           "local_devices", "resident_mb"]

#: The folder that holds this densbench package: workers import the same code.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: How long a worker asked to stop gets before it is killed (seconds).
STOP_GRACE_S = 2.0


def check_device(device: str) -> str:
    """``device`` if it is ``cpu``, ``cuda`` or ``cuda:N``, else a ValueError."""
    kind, colon, index = device.partition(":")
    if not (device == "cpu" or (kind == "cuda" and (not colon or index.isdigit()))):
        raise ValueError(f"device must be cpu, cuda or cuda:N; got {device!r}")
    return device


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
    """Why a worker process ended, for the record of the cell it ran."""
    if returncode is not None and returncode < 0:
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


class SupervisedWorker:
    """One worker process and the cell it runs; started on the first :meth:`submit` and
    after every death."""

    def __init__(self, *, device: str = "cpu", threads: int = 0) -> None:
        self.device, self.threads = device, threads
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.cell: Cell | None = None
        self._started: str | None = None
        self._deadline: float | None = None

    # -- life cycle --------------------------------------------------------------------
    def _start(self) -> None:
        mine, theirs = socket.socketpair()
        env = {**os.environ, "DENSBENCH_SUPERVISOR_PID": str(os.getpid()),
               "PYTHONPATH": os.pathsep.join([_PACKAGE_ROOT, *filter(None, [
                   os.environ.get("PYTHONPATH")])])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "densbench.runner.worker", str(theirs.fileno()),
             str(self.threads), self.device],
            pass_fds=(theirs.fileno(),), env=env, process_group=0, stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(mine.detach())

    def kill(self) -> None:
        """End the worker now (SIGKILL) and wait for it."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.conn.close()
        self.proc = self.conn = None

    def close(self) -> None:
        """Ask an idle worker to exit; kill it if it is busy or does not exit in time."""
        if self.proc is not None and self.cell is None:
            try:
                self.conn.send(None)
                self.proc.wait(STOP_GRACE_S)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    # -- one cell ------------------------------------------------------------------------
    def submit(self, cell: Cell) -> None:
        """Send ``cell`` to the worker, starting a fresh one if there is none or it died
        while idle."""
        if self.proc is not None and self.proc.poll() is not None:
            self.kill()
        if self.proc is None:
            self._start()
        self.cell, self._started, self._deadline = cell, now(), None
        try:
            self.conn.send(cell)
        except OSError:  # it died just now: the next poll records how
            pass

    def poll(self, on_epoch: Callable[[dict], None] | None = None) -> dict[str, Any] | None:
        """The record of the running cell if it has ended (finished, died, out of time or
        memory), else None. Never blocks."""
        try:
            while self.conn.poll():
                kind, payload = self.conn.recv()
                if kind == "record":
                    return self._done(payload)
                if kind == "started" and self.cell.timeout_s is not None:
                    self._deadline = time.monotonic() + self.cell.timeout_s
                elif kind == "epoch" and on_epoch is not None:
                    on_epoch(payload)
        except (EOFError, OSError):
            return self._fail("failed", describe_exit(self._reap()))
        return self._check_limits()

    def _check_limits(self) -> dict[str, Any] | None:
        cell = self.cell
        if self._deadline is not None and time.monotonic() > self._deadline:
            return self._fail("timeout", f"cell exceeded its time budget of "
                                         f"{cell.timeout_s:g} s")
        if cell.memory_mb is not None:
            rss = resident_mb(self.proc.pid)
            if rss is not None and rss > cell.memory_mb:
                return self._fail("failed", f"out of memory: the cell's process used "
                                            f"{rss:.0f} MB, over the cell memory limit of "
                                            f"{cell.memory_mb:g} MB")
        if self.proc.poll() is not None:
            return self._fail("failed", describe_exit(self._reap()))
        return None

    def _reap(self) -> int | None:
        try:
            return self.proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            return None

    def _fail(self, status: str, error: str) -> dict[str, Any]:
        pid = self.proc.pid
        self.kill()
        return self._done(failure_record(self.cell, status, error, started=self._started,
                                         pid=pid, device=self.device))

    def _done(self, record: dict[str, Any]) -> dict[str, Any]:
        self.cell = self._deadline = None
        return record

    def run(self, cell: Cell, poll_s: float = 0.1) -> dict[str, Any]:
        """Run one cell to its end and return its record (blocking)."""
        from multiprocessing.connection import wait

        self.submit(cell)
        while (record := self.poll()) is None:
            wait([self.conn], poll_s)
        return record
