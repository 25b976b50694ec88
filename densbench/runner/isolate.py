"""Planning checks that run a user's code, each in a child process under a cell's limits.

The planner checks a whole suite before any cell starts (:meth:`Suite.validate
<densbench.runner.plan.Suite.validate>`). For an estimator or a dataset from outside the
package (a ``module:attr`` or ``path/to/file.py:attr`` spec, an installed plugin) that
check imports the user's module and calls its code, which may never return: a module that
loops at import would hang the driver itself, where no cell limit applies. So such a check
runs here, in a fresh Python process (``python -m densbench.runner.isolate FOLDER``), under
the limits a cell of the suite would run under: its CPU budget (``cell_timeout_s``, CPU
seconds after the process's own start-up, read from ``/proc`` as the supervisor reads a
worker's; wall-clock seconds where ``/proc`` cannot be read) and its wall-clock backstop.
A check past either limit raises :class:`OutOfLimits`; the planner then records that
plugin's cells as timeouts without running them, and the rest of the run goes on.

Nothing crosses back but plain JSON: the check's return value, or its error's class name
and message (an exception object could name a class of the user's module, which unpickling
would import here).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CHECK_CPU_S", "CheckError", "Limits", "OutOfLimits", "call", "main"]

#: The CPU budget of a check (seconds) when the suite sets no cell budget.
CHECK_CPU_S = 60.0
#: How often the parent looks at the child (seconds).
_POLL_S = 0.02
#: The end of a dead child's stderr that its error keeps (characters).
_STDERR_TAIL = 2000
#: One thread for every numerical library the check's code may load: the budget is the
#: process's CPU seconds.
_ONE_THREAD = {key: "1" for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                    "OPENBLAS_NUM_THREADS")}


@dataclass(frozen=True)
class Limits:
    """A check's CPU budget and wall-clock limit, both in seconds after its start-up."""

    cpu_s: float
    wall_s: float

    @classmethod
    def of_cells(cls, cpu_s: float | None, wall_s: float | None) -> Limits:
        """The limits of a cell with CPU budget ``cpu_s`` and wall-clock limit ``wall_s``
        (None: the defaults a cell gets, :data:`CHECK_CPU_S` where it has no budget)."""
        from densbench.runner.processes import WALL_FACTOR

        cpu = CHECK_CPU_S if cpu_s is None else float(cpu_s)
        return cls(cpu, WALL_FACTOR * cpu if wall_s is None else float(wall_s))


class OutOfLimits(Exception):
    """A check that ran past its limits; the message says which ("more CPU time than
    ...")."""


class CheckError(Exception):
    """A check that failed with an error of a class this process does not know, or whose
    process ended without an answer; the message says what happened."""


def call(target: str, args: tuple[Any, ...], limits: Limits,
         errors: tuple[type[Exception], ...] = ()) -> Any:
    """``target(*args)`` (``"module:function"``, densbench's own code) in a fresh Python
    process under ``limits``: its return value (JSON); an error of one of the classes in
    ``errors`` raised again as that class with its message; :class:`OutOfLimits` or
    :class:`CheckError` otherwise."""
    with tempfile.TemporaryDirectory(prefix="densbench-check-") as tmp:
        folder = Path(tmp)
        (folder / "job.pkl").write_bytes(pickle.dumps((target, args)))
        with open(folder / "stderr", "wb") as err:
            proc = _start(folder, err)
            try:
                _watch(proc, folder, limits)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        return _answer(folder, proc.returncode, errors)


def _start(folder: Path, stderr: Any) -> subprocess.Popen:
    # the child imports this same densbench, wherever the caller runs from
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, **_ONE_THREAD, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.Popen([sys.executable, "-m", "densbench.runner.isolate", str(folder)],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr, process_group=0)


def _watch(proc: subprocess.Popen, folder: Path, limits: Limits) -> None:
    """Wait for the child to end; stop it (SIGKILL) past its limits, counted from the
    moment it says it is ready (its start-up apart)."""
    from densbench.runner.processes import STARTUP_LIMIT_S, process_cpu_seconds

    started, ready = time.monotonic(), None
    while proc.poll() is None and not (folder / "answer.json").exists():
        time.sleep(_POLL_S)
        now = time.monotonic()
        if ready is None:
            ready = _ready(folder, now)
            if ready is None and now - started > STARTUP_LIMIT_S:
                raise OutOfLimits(f"over {STARTUP_LIMIT_S:g} s to start")
            continue
        cpu0, clock0 = ready
        cpu = process_cpu_seconds(proc.pid)
        used = now - clock0 if cpu is None or cpu0 is None else cpu - cpu0
        if used > limits.cpu_s:
            raise OutOfLimits(f"more CPU time than the cell budget of {limits.cpu_s:g} s")
        if now - clock0 > limits.wall_s:
            raise OutOfLimits(f"longer than the cell wall-clock limit of {limits.wall_s:g} s")


def _ready(folder: Path, now: float) -> tuple[float | None, float] | None:
    """(the child's CPU seconds when it became ready, when the parent saw it), or None."""
    try:
        text = (folder / "ready").read_text()
    except FileNotFoundError:
        return None
    return (float(text) if text else None), now


def _answer(folder: Path, returncode: int,
            errors: tuple[type[Exception], ...]) -> Any:
    try:
        answer = json.loads((folder / "answer.json").read_text())
    except (FileNotFoundError, ValueError):
        raise CheckError(_died(folder, returncode)) from None
    if "value" in answer:
        return answer["value"]
    name, message = answer["error"]
    known = {cls.__name__: cls for cls in errors}
    if name in known:
        raise known[name](message)
    raise CheckError(f"{name}: {message}")


def _died(folder: Path, returncode: int) -> str:
    how = (f"killed by {signal.Signals(-returncode).name}" if returncode < 0
           else f"exited with code {returncode}")
    tail = (folder / "stderr").read_text(errors="replace")[-_STDERR_TAIL:].strip()
    last = tail.splitlines()[-1] if tail else ""
    return f"its process {how} before it answered" + (f" ({last})" if last else "")


# -- the child --------------------------------------------------------------------------

def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str]) -> None:
    """The child: import the target (densbench's own module), say it is ready with its CPU
    seconds, call it, write the answer and exit at once. It dies with its parent, as a
    worker does."""
    import importlib

    from densbench.runner.processes import exit_with_parent, process_cpu_seconds

    exit_with_parent(os.getppid())
    folder = Path(argv[0])
    target, args = pickle.loads((folder / "job.pkl").read_bytes())
    module, _, name = target.partition(":")
    fn = getattr(importlib.import_module(module), name)
    cpu = process_cpu_seconds(os.getpid())
    _write(folder / "ready", "" if cpu is None else repr(cpu))
    try:
        answer: dict[str, Any] = {"value": fn(*args)}
    except (Exception, SystemExit) as exc:  # the user's code may raise anything
        answer = {"error": [type(exc).__name__, str(exc)]}
    _write(folder / "answer.json", json.dumps(answer, default=str))
    sys.stderr.flush()
    os._exit(0)  # answered: no atexit handler or thread of the user's code holds it up


if __name__ == "__main__":
    main(sys.argv[1:])
