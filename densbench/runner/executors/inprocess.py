"""The in-process executor: cells run one after another in the driver's own process.

Chosen when no cell needs a supervisor (one worker, no time or memory limit): nothing is
started, and a debugger or profiler sees the cell's code directly. The cells run under
the thread limit of one worker (all cores, or fewer where the process has a limit), the
caller's settings put back after.
"""

from __future__ import annotations

from densbench.runner.cell import run_cell
from densbench.runner.executors import ExecOptions, Finish, StopFlag
from densbench.runner.plan import Cell
from densbench.runner.supervise import local_devices

__all__ = ["InProcessExecutor"]


class InProcessExecutor:
    def __init__(self, options: ExecOptions) -> None:
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
                finish(cell, run_cell(cell, device))

