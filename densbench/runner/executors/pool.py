"""The local pool: N supervised worker processes on this machine.

Each worker runs one cell at a time under a :class:`SupervisedWorker`, which enforces the
cell's CPU-time, wall-clock and memory limits from outside and replaces a worker that
died, so a dead worker fails only its own cell and the run goes on. Workers get cores / N
threads each and, for a CUDA run, their own device in turn. This loop only hands out cells
and checks limits; what ``finish`` does with a record must not keep it waiting (the
driver computes floors on a thread of their own).
"""

from __future__ import annotations

import time
from collections import deque
from multiprocessing.connection import wait

from densbench.runner.executors.base import Finish, RunOptions, StopFlag
from densbench.runner.plan import Cell
from densbench.runner.supervise import SupervisedWorker, local_devices

__all__ = ["PoolExecutor"]

#: How often the driver checks its workers' time and memory limits (seconds).
POLL_S = 0.1


class PoolExecutor:
    in_driver = False
    watches_stop = True

    def __init__(self, options: RunOptions) -> None:
        self.options = options

    def _workers(self) -> list[SupervisedWorker]:
        threads = self.options.threads_per_worker
        return [SupervisedWorker(device=d, threads=threads, compile=self.options.compile)
                for d in local_devices(self.options.device, self.options.workers)]

    def run(self, cells: list[Cell], finish: Finish, stop: StopFlag) -> None:
        """Hand out cells while any are left and no stop was requested; pass each
        worker's training progress on to this process's progress callback."""
        from densbench.estimators.training import emit_progress

        workers, todo = self._workers(), deque(cells)
        try:
            while not stop.forced:  # on a second Ctrl-C, the workers are ended below
                for w in workers:
                    if w.cell is None and todo and not stop.requested:
                        w.submit(todo.popleft())
                busy = [w for w in workers if w.cell is not None]
                if not busy:
                    return
                listening = [w.conn for w in busy if w.listening]
                if listening:
                    wait(listening, POLL_S)
                else:  # only workers on their way out: their exit codes are awaited
                    time.sleep(POLL_S)
                for w in busy:
                    cell = w.cell
                    record = w.poll(emit_progress)
                    if record is not None:
                        finish(cell, record)
        finally:
            for w in workers:
                w.close()
