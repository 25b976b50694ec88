"""The supervised worker process: runs the cells its supervisor sends, one at a time.

Started by :class:`~densbench.runner.supervise.SupervisedWorker` as
``python -m densbench.runner.worker FD THREADS DEVICE`` with one end of a socket pair as
file descriptor ``FD``. It takes no Ctrl-C of its own (the driver decides when cells
stop) and dies with its supervisor: the kernel kills it when the supervisor's process
ends (``PR_SET_PDEATHSIG`` on Linux, which holds even while a cell's compiled code keeps
the GIL and no Python thread can run), and a watcher thread does the same elsewhere.
Python's fault handler writes the stack of a crash, or of a cell stopped at a limit
(SIGUSR1), to stderr, which the supervisor keeps for the cell's record. Messages to the
supervisor: ``("started", {pid, clock, cpu, threads})`` when a cell starts (what its
limits are counted from), ``("epoch", event)`` after each training epoch, ``("record",
record)`` at the end, with what the cell used (``usage``).
"""

from __future__ import annotations

import faulthandler
import importlib
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from densbench.runner.processes import exit_with_parent, skip_exit_collection

__all__ = ["escaped_failure", "main"]

#: What every cell uses, imported before the first cell starts: start-up, not the first
#: cell's budget, pays for it. An estimator's own modules are its cell's. (PyTorch's
#: optimizers, which the C2ST sample metric and every neural estimator use, import
#: torch._dynamo and SymPy on their first step: over a second of CPU time.)
PRELOAD = ("torch", "torch._dynamo", "densbench.runner.cell", "densbench.estimators",
           "densbench.estimators.base", "densbench.estimators.training", "densbench.data",
           "densbench.data.transforms", "densbench.metrics", "densbench.metrics.samples",
           "densbench.metrics.features")


def escaped_failure(cell: Any, exc: BaseException) -> dict[str, Any]:
    """The failed record of a cell whose own code raised what is not an ``Exception``
    (``SystemExit``, ``KeyboardInterrupt``): it ends the cell, never the run."""
    from densbench.runner.cell import failure_record

    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    why = (f"the cell's code called sys.exit({exc.code!r})" if isinstance(exc, SystemExit)
           else "raised by the cell's own code")
    return failure_record(cell, "failed", f"{what} ({why})",
                          traceback="".join(traceback.format_exception(exc, limit=8)))


def _run(cell: Any, device: str, compile: bool) -> dict[str, Any]:
    from densbench.runner.cell import run_cell

    try:
        return run_cell(cell, device, compile=compile)
    except BaseException as exc:  # this process takes no Ctrl-C: it is the cell's own
        return escaped_failure(cell, exc)


def _serve(conn: Connection, device: str, threads: int, compile: bool) -> None:
    from densbench.estimators.training import progress_callback
    from densbench.runner.processes import process_cpu_seconds
    from densbench.runner.supervise import usage_since

    pid = os.getpid()
    with progress_callback(lambda event: conn.send(("epoch", event))):
        while True:
            try:
                cell = conn.recv()
            except EOFError:
                return
            if cell is None:
                return
            start = {"pid": pid, "clock": time.monotonic(),
                     "cpu": process_cpu_seconds(pid), "threads": threads}
            conn.send(("started", start))
            record = _run(cell, device, compile)
            record["usage"] = usage_since(start, process_cpu_seconds(pid), time.monotonic())
            conn.send(("record", record))


def main(argv: list[str]) -> int:
    fd, threads, device = int(argv[0]), int(argv[1]), argv[2]
    compile = argv[3:] == ["compile"]  # the run's --compile
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(int(os.environ.get("DENSBENCH_SUPERVISOR_PID", os.getppid())))
    faulthandler.enable(all_threads=True)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from densbench.metrics.timing import limit_threads, steady_allocator, thread_count

    if threads > 0:  # N workers x (cores / N) threads each, never oversubscribed
        limit_threads(threads)
    steady_allocator()
    for module in PRELOAD:
        importlib.import_module(module)
    _serve(Connection(fd), device, threads if threads > 0 else thread_count(), compile)
    skip_exit_collection()  # its records are sent: only its exit is left
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
