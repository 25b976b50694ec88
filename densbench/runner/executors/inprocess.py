"""The in-process executor: cells run one after another in the driver's own process.

Chosen when no cell needs a supervisor (one worker, no time or memory limit): nothing is
started, and a debugger or profiler sees the cell's code directly.
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
        (device,) = local_devices(self.options.device, 1)
        for cell in cells:
            if stop.requested:
                return
            finish(cell, run_cell(cell, device))

