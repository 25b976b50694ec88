"""What the processes of a run share: how a process's CPU time is read, the wall-clock
backstop of a CPU budget, and how a child process dies with its parent.

Used by the supervisor and its workers (:mod:`densbench.runner.supervise`,
:mod:`densbench.runner.worker`) and by the planner's checks of a user's code
(:mod:`densbench.runner.isolate`); it imports nothing of densbench, so each of them can.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

__all__ = ["STARTUP_LIMIT_S", "WALL_FACTOR", "exit_with_parent", "process_cpu_seconds",
           "skip_exit_collection"]

#: The default wall-clock backstop, as a multiple of a cell's CPU budget: room for a
#: machine loaded about ten times over before a computing cell meets it.
WALL_FACTOR = 10.0
#: Wall-clock seconds a worker process may take to start and take up a cell.
STARTUP_LIMIT_S = 600.0
#: Clock ticks per second, the unit of /proc/<pid>/stat's CPU times.
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: How often the worker checks that its supervisor is still alive (seconds).
PARENT_POLL_S = 0.2
#: prctl(2)'s option that sets the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid``, all of its threads (``/proc``, in
    clock ticks; None where unavailable). Read the same way in the worker and in its
    supervisor, so that differences of the two are exact to a tick."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            # after the command name, which may itself hold spaces and parentheses
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return None


def skip_exit_collection() -> None:
    """Spare the interpreter's exit its garbage collection of what is alive now (for a
    process about to exit, its work done and written). With PyTorch imported, that last
    collection walks the whole heap of tensors' and modules' objects: about a second of
    CPU time at every exit of the command and of each worker, most of a short command's
    end. The objects are moved to the collector's permanent generation
    (:func:`gc.freeze`); exit handlers and the flushing of open files still run."""
    import gc

    gc.freeze()


def exit_with_parent(parent: int) -> None:
    """Die with ``parent``: the kernel's SIGKILL when it ends (Linux), and a thread that
    exits once it is no longer this process's parent (everywhere; it cannot run while a
    cell holds the GIL). A parent gone before the kernel was asked ends this process now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="densbench-parent-watch", daemon=True).start()
