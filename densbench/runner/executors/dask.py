"""The Dask executor: cells as tasks on a Dask distributed scheduler.

With no scheduler address it starts a LocalCluster of ``workers`` processes (cores /
workers threads each); otherwise it submits to ``tcp://host:port`` and leaves the
cluster's workers as their owner started them. Each task runs its cell in a
:class:`SupervisedWorker` child of the Dask worker, so time and memory limits hold exactly
as in the local pool. At most one cell per worker thread is in flight: a first Ctrl-C
stops the submissions and waits for those; a worker that dies has its task rescheduled
by Dask.
"""

from __future__ import annotations

import threading
from typing import Any

from densbench.runner.executors import ExecOptions, Finish, StopFlag
from densbench.runner.plan import Cell
from densbench.runner.supervise import SupervisedWorker, local_devices

__all__ = ["DaskExecutor", "close_children", "configure_worker", "run_supervised"]

#: This Dask worker's settings (set by :func:`configure_worker`) and its supervised
#: children, one per worker thread.
_SETTINGS: dict[str, Any] = {"device": "cpu", "threads": 0}
_CHILDREN: dict[int, SupervisedWorker] = {}


def close_children() -> None:
    """Run on each Dask worker at the end of a run: end its supervised children (on a
    cluster that outlives the run, idle children would hold their memory)."""
    for child in _CHILDREN.values():
        child.close()
    _CHILDREN.clear()


def configure_worker(device: str, index: int, threads: int) -> None:
    """Run on each Dask worker: its device (worker ``index`` of the run, in turn over
    its machine's GPUs) and the threads of the processes that run its cells."""
    close_children()
    _SETTINGS.update(device=local_devices(device, index + 1)[index], threads=threads)


def run_supervised(cell: Cell) -> dict[str, Any]:
    """The Dask task: run ``cell`` in this worker thread's supervised child."""
    key = threading.get_ident()
    if key not in _CHILDREN:
        _CHILDREN[key] = SupervisedWorker(**_SETTINGS)
    return _CHILDREN[key].run(cell)


class DaskExecutor:
    def __init__(self, options: ExecOptions) -> None:
        self.options = options

    def _connect(self) -> tuple[Any, Any, int]:
        """A client, the LocalCluster started for it (or None), the threads per worker
        to set (0: leave them)."""
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("the dask executor needs dask.distributed: "
                             "pip install 'densbench[dask]'") from None
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
                           workers=[address])
            slots = max(1, sum(info.get("nthreads", 1) for _, info in workers))
            self._submit_in_turn(client, cells, slots, finish, stop)
            client.run(close_children)
        finally:
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
