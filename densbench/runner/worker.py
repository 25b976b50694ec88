"""The supervised worker process: runs the cells its supervisor sends, one at a time.

Started by :class:`~densbench.runner.supervise.SupervisedWorker` as
``python -m densbench.runner.worker FD THREADS DEVICE`` with one end of a socket pair as
file descriptor ``FD``. It takes no Ctrl-C of its own (the driver decides when cells
stop) and exits as soon as its supervisor is gone, so that killing a driver never leaves
workers computing for nobody. Messages to the supervisor: ``("started", pid)`` when a cell
arrives, ``("epoch", event)`` after each training epoch, ``("record", record)`` at the end.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

__all__ = ["main"]

#: How often the worker checks that its supervisor is still alive (seconds).
PARENT_POLL_S = 0.2


def _exit_with_parent(parent: int) -> None:
    """Exit at once when ``parent`` is no longer this process's parent (it died)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="densbench-parent-watch", daemon=True).start()


def _serve(conn: Connection, device: str) -> None:
    from densbench.estimators.training import progress_callback
    from densbench.runner.cell import run_cell

    with progress_callback(lambda event: conn.send(("epoch", event))):
        while True:
            try:
                cell = conn.recv()
            except EOFError:
                return
            if cell is None:
                return
            conn.send(("started", os.getpid()))
            conn.send(("record", run_cell(cell, device)))


def main(argv: list[str]) -> int:
    fd, threads, device = int(argv[0]), int(argv[1]), argv[2]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(int(os.environ.get("DENSBENCH_SUPERVISOR_PID", os.getppid())))
    from densbench.metrics.timing import limit_threads, steady_allocator

    if threads > 0:  # N workers x (cores / N) threads each, never oversubscribed
        limit_threads(threads)
    steady_allocator()
    _serve(Connection(fd), device)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
