"""The in-process executor: cells run one after another in the driver's own process.

For a debugger or a profiler only (``--executor inprocess``): nothing is started, and the
cell's code runs where they see it. No time or memory limit is enforced here, and a cell
that kills its process (a segfault, ``os._exit``) ends the run; a cell's own
``SystemExit`` or ``KeyboardInterrupt`` fails that cell only, as in a worker. The cells
run under the thread limit of one worker (all cores, or fewer where the process has a
limit), the caller's settings put back after.
"""

from __future__ import annotations

from typing import Any

from densbench.runner.cell import run_cell
from densbench.runner.executors.base import Finish, RunOptions, StopFlag
from densbench.runner.plan import Cell
from densbench.runner.supervise import local_devices
from densbench.runner.worker import escaped_failure

__all__ = ["InProcessExecutor"]


def _run(cell: Cell, device: str, compile: bool, stop: StopFlag) -> dict[str, Any]:
    """``run_cell``, with what it lets through made a failed record, except the driver's
    own second Ctrl-C."""
    try:
        return run_cell(cell, device, compile=compile)
    except KeyboardInterrupt as exc:
        if stop.forced:
            raise
        return escaped_failure(cell, exc)
    except BaseException as exc:  # SystemExit and the like, raised by the cell's code
        return escaped_failure(cell, exc)


class InProcessExecutor:
    in_driver = True
    watches_stop = False  # the cells run on this thread: only an exception stops one

    def __init__(self, options: RunOptions) -> None:
        self.options = options

    def run(self, cells: list[Cell], finish: Finish, stop: StopFlag) -> None:
        from densbench.metrics.timing import process_thread_limit, thread_limit

        (device,) = local_devices(self.options.device, 1)
        # every core, as one worker of the pool would get, within any limit already set on
        # this process: one count for PyTorch and every BLAS pool (their own defaults
        # differ: physical cores, logical CPUs)
        threads = min(self.options.threads_per_worker, process_thread_limit() or 1 << 30)
        with thread_limit(threads):
            for cell in cells:
                if stop.requested:
                    return
                finish(cell, _run(cell, device, self.options.compile, stop))
