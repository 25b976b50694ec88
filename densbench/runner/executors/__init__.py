"""Executors: where cells run. One module each, one small interface, one list of names.

Every executor takes the cells still to run and hands each record to ``finish`` in the
driver (the only writer) as soon as it exists; it stops handing out cells once
``stop.requested`` is set (a first Ctrl-C) and ends every process it started before it
returns or raises. ``local`` runs every cell in a supervised worker process (one per
``--workers``), so that a cell's limits hold and a cell that crashes its process, calls
``sys.exit`` or segfaults fails alone; ``dask`` submits to a Dask distributed scheduler
(each task supervising its own worker process); ``inprocess`` runs the cells in the
driver's own process, for a debugger or profiler only: no limit is enforced there, and a
cell that crashes the process ends the run.
"""

from __future__ import annotations

from importlib import import_module

from densbench.runner.executors.base import EXECUTORS, Executor, Finish, RunOptions, StopFlag
from densbench.runner.plan import Cell

__all__ = ["EXECUTORS", "Executor", "Finish", "RunOptions", "StopFlag", "make_executor"]


def make_executor(cells: list[Cell], options: RunOptions) -> Executor:
    """The executor ``options`` names, for these cells (see the module docstring)."""
    module, name = EXECUTORS[options.executor]
    executor: Executor = getattr(import_module(f"{__name__}.{module}"), name)(options)
    return executor
