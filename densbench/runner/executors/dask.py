"""The Dask executor: cells as tasks on a Dask distributed scheduler.

With no scheduler address it starts a LocalCluster of ``workers`` processes (cores /
workers threads each); otherwise it submits to ``tcp://host:port`` and leaves the
cluster's workers as their owner started them. Each task runs its cell in a
:class:`SupervisedWorker` child of the Dask worker (one per worker thread, kept between
tasks), so limits hold exactly as in the local pool. At most one cell per worker thread
is in flight: a first Ctrl-C stops the submissions and waits for those; a worker that
dies has its task rescheduled by Dask.

The children end with the run, however it ends: the driver ends every idle child when it
stops (:func:`close_children`, also after an error or a second Ctrl-C), and a Dask worker
ends a child idle for longer than :data:`IDLE_S` seconds (environment variable
``DENSBENCH_DASK_IDLE_S``), for a driver that died before it could (a cell still running
on the cluster then finishes first). On a cluster that outlives the run, an idle child
would otherwise hold its memory (hundreds of MB with PyTorch loaded) for good.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from densbench.devices import DEFAULT_DEVICE
from densbench.runner.executors.base import Finish, RunOptions, StopFlag
from densbench.runner.plan import Cell
from densbench.runner.supervise import SupervisedWorker, local_devices

__all__ = ["IDLE_S", "DaskExecutor", "close_children", "configure_worker",
           "run_supervised"]

#: Seconds a Dask worker keeps an idle supervised child before ending it.
IDLE_S = float(os.environ.get("DENSBENCH_DASK_IDLE_S", "60"))

#: This Dask worker's settings (set by :func:`configure_worker`) and its idle supervised
#: children by worker thread, with the time each became idle (a busy child is its task's
#: alone until it returns it).
_SETTINGS: dict[str, Any] = {"device": DEFAULT_DEVICE, "threads": 0, "compile": False}
_IDLE: dict[int, tuple[SupervisedWorker, float]] = {}
_LOCK = threading.Lock()
_REAPER_PID: list[int] = []


def close_children(idle_for: float = 0.0) -> int:
    """End this Dask worker's supervised children that have been idle for at least
    ``idle_for`` seconds (every idle one by default); how many were ended."""
    at = time.monotonic()
    with _LOCK:
        keys = [key for key, (_, since) in _IDLE.items() if at - since >= idle_for]
        ended = [_IDLE.pop(key)[0] for key in keys]
    for child in ended:
        child.close()
    return len(ended)


def _reap_idle() -> None:
    while True:
        time.sleep(IDLE_S / 4)
        close_children(IDLE_S)


def _start_reaper() -> None:
    """One thread per Dask worker process that ends children idle for too long."""
    with _LOCK:
        if _REAPER_PID == [os.getpid()]:
            return
        _REAPER_PID[:] = [os.getpid()]
    threading.Thread(target=_reap_idle, name="densbench-idle-children", daemon=True).start()


def configure_worker(device: str, index: int, threads: int, compile: bool = False) -> None:
    """Run on each Dask worker: its device (worker ``index`` of the run, in turn over
    its machine's GPUs), the threads of the processes that run its cells and whether
    they train compiled."""
    close_children()
    _SETTINGS.update(device=local_devices(device, index + 1)[index], threads=threads,
                     compile=compile)


def run_supervised(cell: Cell) -> dict[str, Any]:
    """The Dask task: run ``cell`` in this worker thread's supervised child."""
    _start_reaper()
    key = threading.get_ident()
    with _LOCK:
        child = _IDLE.pop(key, (None, 0.0))[0]
    if child is None:
        child = SupervisedWorker(**_SETTINGS)
    try:
        return child.run(cell)
    finally:
        with _LOCK:
            _IDLE[key] = (child, time.monotonic())


class DaskExecutor:
    in_driver = False
    watches_stop = False  # it waits in Dask's as_completed, which only an exception ends

    def __init__(self, options: RunOptions) -> None:
        self.options = options

    def _connect(self) -> tuple[Any, Any, int]:
        """A client, the LocalCluster started for it (or None), the threads per worker
        to set (0: leave them)."""
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("the dask executor needs dask.distributed: "
                             'pip install -e ".[dask]" in a checkout, '
                             "pip install 'densbench[dask]' otherwise") from None
        if self.options.scheduler is None:
            n = max(1, self.options.workers)
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            return Client(cluster), cluster, self.options.threads_per_worker
        try:
            return Client(self.options.scheduler, timeout=5), None, 0
        except OSError as exc:
            raise ValueError(f"cannot reach the Dask scheduler at "
                             f"{self.options.scheduler}: {exc}") from None

    def run(self, cells: list[Cell], finish: Finish, stop: StopFlag) -> None:
        client, cluster, threads = self._connect()
        try:
            workers = sorted(client.scheduler_info()["workers"].items())
            for i, (address, _) in enumerate(workers):
                client.run(configure_worker, self.options.device, i, threads,
                           self.options.compile, workers=[address])
            slots = max(1, sum(info.get("nthreads", 1) for _, info in workers))
            self._submit_in_turn(client, cells, slots, finish, stop)
        finally:
            with contextlib.suppress(Exception):  # a cluster gone: nothing left to end
                client.run(close_children, on_error="ignore")
            client.close()
            if cluster is not None:
                cluster.close()

    @staticmethod
    def _submit_in_turn(client: Any, cells: list[Cell], slots: int, finish: Finish,
                        stop: StopFlag) -> None:
        from distributed import as_completed

        from densbench.runner.cell import failure_record

        todo = list(reversed(cells))
        running = {}

        def submit() -> None:
            cell = todo.pop()
            fut = client.submit(run_supervised, cell, pure=False, key=f"cell-{cell.id}")
            running[fut] = cell
            queue.add(fut)

        queue = as_completed()
        for _ in range(min(slots, len(todo))):
            submit()
        for fut in queue:
            cell = running.pop(fut)
            try:
                record = fut.result()
            except Exception as exc:  # the task was lost (its workers kept dying)
                record = failure_record(cell, "failed", f"dask worker failed: "
                                                        f"{type(exc).__name__}: {exc}")
            finish(cell, record)
            if todo and not stop.requested:
                submit()
