"""What every executor shares: the options a run runs its cells with, the stop flag the
driver's Ctrl-C sets, the ``finish`` callback a record is handed to, the executor
interface, and the names a run can choose among. The executors' modules import this one,
never the package, so that the package may import them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from densbench.devices import DEFAULT_DEVICE, check_device
from densbench.runner.plan import Cell

__all__ = ["EXECUTORS", "Executor", "Finish", "RunOptions", "StopFlag"]

#: The executors a run can name (``--executor``), each with the module (in this package)
#: and class that implement it; the package imports a module only when a run names it, so
#: that a run without Dask never imports ``distributed``.
EXECUTORS: dict[str, tuple[str, str]] = {
    "local": ("pool", "PoolExecutor"),
    "dask": ("dask", "DaskExecutor"),
    "inprocess": ("inprocess", "InProcessExecutor"),
}

Finish = Callable[[Cell, dict[str, Any]], None]


@dataclass
class StopFlag:
    """Set by the driver's first Ctrl-C: hand out no more cells."""

    requested: bool = False
    #: set by a second Ctrl-C: stop the running cells too. An executor that watches it
    #: (``Executor.watches_stop``) stops by itself; for the others the Ctrl-C then raises
    #: KeyboardInterrupt, and one raised without it came from a cell's own code
    forced: bool = False
    #: whether the flags alone stop what runs now (the driver's set-up, a watching
    #: executor); False while cells run under an executor that only an exception stops
    watched: bool = True


@dataclass(frozen=True)
class RunOptions:
    """How a run runs its cells, from the command line down to every executor: ``workers``
    processes (a Dask LocalCluster's, without a ``scheduler`` address), the ``executor``
    that runs them (:data:`EXECUTORS`), the ``device`` estimators that take one run on,
    whether the neural estimators train compiled (``compile``; their figures change by
    floating-point order only) and whether cells already recorded as failed run
    again (``retry_failed``). None of these changes a cell's id."""

    workers: int = 1
    device: str = DEFAULT_DEVICE
    scheduler: str | None = None
    executor: str = "local"
    retry_failed: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        check_device(self.device)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) \
                or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1; got {self.workers!r}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown executor {self.executor!r}; known: "
                             f"{', '.join(EXECUTORS)}")

    @property
    def threads_per_worker(self) -> int:
        """PyTorch and BLAS threads of each of the local workers: usable cores (the
        process's CPU affinity) / workers, at least 1, so that N workers never
        oversubscribe the cores they were given (and one worker, the in-process executor,
        uses them all, whatever each library's own default)."""
        from densbench.parallel import usable_cores

        return max(1, usable_cores() // max(1, self.workers))


class Executor(Protocol):
    #: True where cells run in the driver's own process and thread (records are then
    #: finished between cells, not beside them)
    in_driver: bool
    #: True where :meth:`run` checks ``stop.forced`` at least every few tenths of a second
    #: and returns when it is set (its cells stopped): the driver's second Ctrl-C then
    #: raises nothing, since an exception raised at whatever line the driver is on (an
    #: import, a lock, a child's start) can leave that half done
    watches_stop: bool

    def run(self, cells: list[Cell], finish: Finish, stop: StopFlag) -> None:
        """Run ``cells``, calling ``finish(cell, record)`` for each as it ends."""
