"""Faults that real runs meet, delivered for real: Ctrl-C (SIGINT) to the driver's process
group, SIGKILL to a worker or to the driver, a cell over its memory limit, a corrupt
record, a second run into the same folder, a timeout under Dask. Every test ends the
processes it started, by pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import densbench
from densbench.runner.execute import run_cells
from densbench.runner.plan import Cell, Spec
from densbench.runner.store import RunStore
from tests import gated

ROOT = Path(densbench.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
#: Waits are generous: the machine running the tests may be busy (nothing is timed).
PATIENCE_S = 240

SUITE = """
name = "faults"
seeds = {seeds}
{budget}
[samples]
metrics = false
[[datasets]]
name = "banana"
[datasets.params]
n_train = 300
n_val = 300
n_test = 300
"""
ESTIMATOR = """[[estimators]]
name = "{name}"
[estimators.params]
{params}
"""


def _suite(tmp_path: Path, *, seeds: int, gate: Path | None = None) -> Path:
    """One estimator on 300 rows of banana, one cell per seed: KDE with a fixed bandwidth,
    or with ``gate`` the gated estimator of ``tests/gated.py``, whose cells wait until the
    test opens their gate (a cell in flight at a known point, costing no CPU)."""
    path = tmp_path / "suite.toml"
    estimator, params = (("kde", "bandwidth = 0.3") if gate is None
                         else (gated.SPEC, f'gate = "{gate}"'))
    path.write_text(SUITE.format(seeds=seeds, budget="")
                    + ESTIMATOR.format(name=estimator, params=params))
    return path


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "densbench", "run", "--no-progress", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "densbench", "run", "--no-progress", *args],
                          capture_output=True, text=True, env=ENV, timeout=PATIENCE_S)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _workers(pid: int) -> list[int]:
    """The supervised worker processes of driver ``pid``."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"densbench.runner.worker" in cmd:
                out.append(child)
    return out


def _wait_for(condition, what: str, timeout: float = PATIENCE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def _end(procs: list[subprocess.Popen], pids: list[int]) -> None:
    """End whatever a test started and is still running."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}


@dataclass
class _Run:
    out: Path
    suite: Path
    gate: Path
    driver: subprocess.Popen
    workers: list[int]


@contextlib.contextmanager
def _two_workers_busy(tmp_path: Path, seeds: int = 40) -> Iterator[_Run]:
    """A run of gated cells (seed s waits until the test opens gate s) on two workers, once
    both workers are in their first cell (seeds 0 and 1); whatever it started is ended
    afterwards. By default far more cells than an interrupted run gets through."""
    out, gate = tmp_path / "run", tmp_path / "gate"
    gate.mkdir()
    suite = _suite(tmp_path, seeds=seeds, gate=gate)
    run = _Run(out, suite, gate,
               _start("--suite", str(suite), "--workers", "2", "--out", str(out)), [])
    try:
        run.workers = _wait_for(lambda: len(_workers(run.driver.pid)) == 2
                                and _workers(run.driver.pid), "two workers")
        _wait_for(lambda: gated.started(gate) == {0, 1}, "both workers in a cell")
        yield run
    finally:
        _end([run.driver], run.workers)


@pytest.mark.slow
def test_first_ctrl_c_finishes_running_cells_and_a_second_run_is_refused(tmp_path):
    with _two_workers_busy(tmp_path) as run:
        # one writer per folder: a second run into it is refused with one line, exit 2
        second = _run("--suite", str(run.suite), "--out", str(run.out))
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert f"being written by another run (pid {run.driver.pid} on " in second.stderr
        gated.open_gate(run.gate, 0)
        seen = _wait_for(lambda: len(_records(run.out)), "a first record")
        os.killpg(run.driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        at_signal = len(_records(run.out))  # at least as many as when the signal came
        gated.open_gate(run.gate)  # every cell may finish now: only those running do
        _, err = run.driver.communicate(timeout=PATIENCE_S)
        assert run.driver.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        records = _records(run.out)
        # the cells that were running were finished and written; no new one was started
        assert seen <= len(records) <= at_signal + 2 < 40
        assert {r["status"] for r in records.values()} == {"ok"}
        assert not list((run.out / "cells").glob(".*.tmp"))
        assert not (run.out / ".lock").exists()
        _wait_for(lambda: not any(map(_alive, run.workers)), "the workers to exit", 30)
        manifest = json.loads((run.out / "manifest.json").read_text())
        assert manifest["invocations"][-1]["interrupted"] is True


@pytest.mark.slow
def test_second_ctrl_c_stops_running_cells_and_loses_nothing_finished(tmp_path):
    with _two_workers_busy(tmp_path) as run:
        gated.open_gate(run.gate, 0)
        _wait_for(lambda: len(_records(run.out)), "a first record")
        os.killpg(run.driver.pid, signal.SIGINT)  # the running cells stay gated
        time.sleep(0.3)
        os.killpg(run.driver.pid, signal.SIGINT)
        _, err = run.driver.communicate(timeout=60)
        assert run.driver.returncode == 130, err
        assert "Traceback" not in err
        assert not any(map(_alive, run.workers)), "a second Ctrl-C ends the workers"
        records = _records(run.out)
        assert len(records) < 40 and {r["status"] for r in records.values()} == {"ok"}


@pytest.mark.slow
def test_a_dead_worker_fails_only_its_cell_and_a_killed_driver_ends_its_workers(tmp_path):
    with _two_workers_busy(tmp_path, seeds=6) as run:
        gated.open_gate(run.gate, 0)
        _wait_for(lambda: len(_records(run.out)), "a first record")
        # both workers are in a cell again (seeds 1 and 2), held at their gates
        _wait_for(lambda: gated.started(run.gate) == {0, 1, 2}, "a third cell")
        victim = run.workers[0]
        os.kill(victim, signal.SIGKILL)  # as the kernel's OOM killer would
        failed = _wait_for(lambda: [r for r in _records(run.out).values()
                                    if r["status"] != "ok"],
                           "the dead worker's cell to be recorded")
        assert [(r["error"], r["pid"]) for r in failed] == [
            ("worker process killed by SIGKILL (out of memory?)", victim)]
        # the run goes on with a fresh worker
        n = len(_records(run.out))
        _wait_for(lambda: 3 in gated.started(run.gate), "the next cell")
        gated.open_gate(run.gate, 3)
        _wait_for(lambda: len(_records(run.out)) > n, "a record after the death")
        run.workers += _workers(run.driver.pid)
        os.kill(run.driver.pid, signal.SIGKILL)  # the driver alone: its workers must notice
        run.driver.wait()
        _wait_for(lambda: not any(map(_alive, run.workers)), "the orphaned workers to exit",
                  30)
        # a re-run counts the failed cell already there: exit 1, and says how to retry
        gated.open_gate(run.gate)
        res = _run("--suite", str(run.suite), "--workers", "2", "--out", str(run.out))
        assert res.returncode == 1, res.stderr
        assert "(1 of them failed); 1 failed in all" in res.stdout
        assert "--retry-failed" in res.stdout
        assert len(_records(run.out)) == 6


@pytest.mark.slow
def test_memory_limit_rerun_summary_retry_and_corrupt_records(tmp_path):
    out, suite = tmp_path / "run", _suite(tmp_path, seeds=2)
    # a worker process needs far more than 64 MB: every cell is stopped as out of memory
    res = _run("--suite", str(suite), "--cell-memory-mb", "64", "--out", str(out))
    assert res.returncode == 1, res.stderr
    errors = [r["error"] for r in _records(out).values()]
    assert len(errors) == 2 and all(e.startswith("out of memory: the cell's process used ")
                                    and e.endswith("over the cell memory limit of 64 MB")
                                    for e in errors), errors
    # a corrupt record is moved aside with a warning and its cell computed again; a plain
    # re-run counts the failed record already there and says how to retry
    victim, other = sorted((out / "cells").glob("*.json"))
    victim.write_text(victim.read_text()[:100])
    res = _run("--suite", str(suite), "--out", str(out))
    assert res.returncode == 1, res.stderr
    assert "warning: malformed record" in res.stderr and "moved aside to" in res.stderr
    assert json.loads(victim.read_text())["status"] == "ok"
    assert len(list((out / "corrupt").glob("*.json"))) == 1
    assert ("1 ran (1 ok, 0 failed), 1 already done (1 of them failed); 1 failed in all"
            in res.stdout)
    assert "--retry-failed" in res.stdout
    res = _run("--suite", str(suite), "--out", str(out), "--retry-failed")
    assert res.returncode == 0, res.stderr
    assert json.loads(other.read_text())["status"] == "ok"


@pytest.mark.slow
def test_dask_enforces_the_time_limit_in_a_supervised_child(tmp_path):
    distributed = pytest.importorskip("distributed")
    slow = Cell(Spec("kde", {"bandwidth": "cv"}),
                Spec("banana", {"n_train": 20000, "n_val": 5000}), 0, timeout_s=0.5,
                sample_metrics=False)
    fast = Cell(Spec("gaussian"), Spec("banana", {"n_train": 300, "n_val": 100,
                                                  "n_test": 100}), 0, timeout_s=120,
                sample_metrics=False)
    store = RunStore(tmp_path / "r", create=True)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    try:
        summary = run_cells([slow, fast], store, executor="dask",
                            scheduler=cluster.scheduler_address)
    finally:
        cluster.close()
    rec = store.read(slow.id)
    assert rec["status"] == "timeout" and rec["usage"]["limit"] == "cpu"
    assert rec["error"] == "cell exceeded its CPU-time budget of 0.5 s per thread"
    ok = store.read(fast.id)
    assert ok["status"] == "ok" and (summary.ok, len(summary.failed)) == (1, 1)
    # the cells ran in a supervised child of the Dask worker, replaced after the timeout,
    # and ended with the cluster
    assert ok["pid"] != os.getpid() and ok["pid"] != rec["pid"]
    _wait_for(lambda: not _alive(ok["pid"]), "the supervised child to exit", 30)


# -- cells that misbehave: a user's estimator file, as a plugin is written -------------

FAULTY = '''
import ctypes
import re
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

from densbench.estimators.base import DensityEstimator


class _Fault(DensityEstimator):
    """A diagonal Gaussian whose fit first does what its subclass's ``fault`` does."""

    def __init__(self, *, gate: str = ".", random_state=None):
        self.gate = gate
        self.random_state = random_state

    def _fit(self, X, X_val):
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0)
        self.fault(Path(self.gate))

    def fault(self, gate):
        pass

    def _score_samples(self, X):
        return norm.logpdf(X, self.mean_, self.scale_).sum(axis=1)

    def _sample(self, n, rng):
        return self.mean_ + self.scale_ * rng.standard_normal((n, self.mean_.size))

    def _n_parameters(self):
        return 2 * self.mean_.size


class Exits(_Fault):
    def fault(self, gate):
        sys.exit(4)


class Interrupts(_Fault):
    def fault(self, gate):
        raise KeyboardInterrupt


class Segfaults(_Fault):
    def fault(self, gate):
        print("about to read address 0", file=sys.stderr, flush=True)
        ctypes.string_at(0)


class HoldsTheGil(_Fault):
    def fault(self, gate):
        (gate / "started").touch()
        # catastrophic backtracking: the regex engine runs for ages without a Python
        # bytecode in between, holding the GIL all along
        re.match(r"(a+)+$", "a" * 64 + "b")


class Burns(_Fault):
    """Waits at its gate (sleeping), then computes for ``seconds`` of CPU time."""

    def __init__(self, *, gate: str = ".", seconds: float = 1.0, random_state=None):
        super().__init__(gate=gate, random_state=random_state)
        self.seconds = seconds

    def fault(self, gate):
        (gate / "started").touch()
        while not (gate / "open").exists():
            time.sleep(0.01)
        end = time.process_time() + self.seconds
        while time.process_time() < end:
            pass


class SpinsOnceOpen(_Fault):
    def fault(self, gate):
        (gate / "started").touch()
        while not (gate / "open").exists():
            time.sleep(0.01)
        while True:
            pass
'''


def _faulty(tmp_path: Path, cls: str) -> str:
    """The spec of estimator ``cls`` of :data:`FAULTY`, written to a user's file."""
    path = tmp_path / "faulty.py"
    if not path.exists():
        path.write_text(FAULTY)
    return f"{path}:{cls}"


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            out += [child, *_descendants(child)]
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _cells_suite(tmp_path: Path, specs: list[str], budget: str = "") -> Path:
    """One cell of each estimator in ``specs`` (seed 0) on 300 rows of banana."""
    path = tmp_path / "cells.toml"
    path.write_text(SUITE.format(seeds=1, budget=budget) + "".join(
        ESTIMATOR.format(name=spec, params="") for spec in specs))
    return path


@pytest.mark.slow
def test_a_cell_that_exits_or_segfaults_fails_alone_with_what_its_process_left(tmp_path):
    # one worker and no limits: the cells still run in a supervised child, so a plugin's
    # sys.exit(4) or segfault is its own cell's failed record, never the end of the run
    specs = [_faulty(tmp_path, "Exits"), _faulty(tmp_path, "Segfaults"), "diag_gaussian"]
    out = tmp_path / "run"
    res = _run("--suite", str(_cells_suite(tmp_path, specs)), "--out", str(out))
    assert res.returncode == 1, res.stderr[-3000:]
    records = {r["estimator"]["name"].rsplit(":", 1)[-1]: r for r in _records(out).values()}
    assert records["diag_gaussian"]["status"] == "ok"
    exits, segv = records["Exits"], records["Segfaults"]
    assert exits["status"] == segv["status"] == "failed"
    assert exits["error"] == "SystemExit: 4 (the cell's code called sys.exit(4))"
    assert "sys.exit(4)" in exits["traceback"] and "faulty.py" in exits["traceback"]
    assert segv["error"] == "worker process killed by SIGSEGV"
    # the fault handler's stack of the crash, and what the cell wrote to stderr before it
    for text in ("about to read address 0", "Segmentation fault", "faulty.py", "in fault"):
        assert text in segv["traceback"], segv["traceback"]
    assert "2 failed in all" in res.stdout
    assert not (out / ".lock").exists()


def test_in_the_drivers_process_too_a_cells_exit_or_interrupt_fails_only_that_cell(tmp_path):
    # what a cell's own code raises beyond Exception ends that cell, not the driver's run
    cells = [Cell(Spec(spec), Spec("banana", SMALL_BANANA), 0, sample_metrics=False)
             for spec in (_faulty(tmp_path, "Exits"), _faulty(tmp_path, "Interrupts"),
                          "diag_gaussian")]
    store = RunStore(tmp_path / "r", create=True)
    summary = run_cells(cells, store, executor="inprocess")
    assert (summary.ok, len(summary.failed), summary.interrupted) == (1, 2, False)
    exits, interrupts, ok = (store.read(c.id) for c in cells)
    assert exits["error"] == "SystemExit: 4 (the cell's code called sys.exit(4))"
    assert interrupts["error"] == "KeyboardInterrupt (raised by the cell's own code)"
    assert "faulty.py" in interrupts["traceback"] and ok["pid"] == os.getpid()


@pytest.mark.slow
def test_a_dead_workers_record_says_how_it_ended(tmp_path):
    # cells with a budget, in a worker: the record names how each ended (a SystemExit
    # with its code, a signal) and keeps the stack of a crash
    cells = [Cell(Spec(_faulty(tmp_path, name)), Spec("banana", SMALL_BANANA), 0,
                  timeout_s=120, sample_metrics=False)
             for name in ("Exits", "Segfaults")]
    store = RunStore(tmp_path / "r", create=True)
    summary = run_cells(cells, store)
    assert (summary.ok, len(summary.failed)) == (0, 2)
    exits, segv = (store.read(c.id) for c in cells)
    assert exits["error"] == "SystemExit: 4 (the cell's code called sys.exit(4))"
    assert segv["error"] == "worker process killed by SIGSEGV"
    assert "Segmentation fault" in segv["traceback"] and "faulty.py" in segv["traceback"]


SMALL_BANANA = {"n_train": 300, "n_val": 100, "n_test": 100}


@pytest.mark.slow
def test_a_worker_dies_with_its_driver_even_while_its_cell_holds_the_gil(tmp_path):
    # the worker's watcher thread cannot run while compiled code holds the GIL; the
    # kernel's parent-death signal needs no thread of the worker's
    gate = tmp_path / "gate"
    gate.mkdir()
    suite = _cells_suite(tmp_path, [], budget="[budget]\ncell_timeout_s = 600")
    suite.write_text(suite.read_text() + ESTIMATOR.format(
        name=_faulty(tmp_path, "HoldsTheGil"), params=f'gate = "{gate}"'))
    driver, workers = _start("--suite", str(suite), "--out", str(tmp_path / "run")), []
    try:
        _wait_for(lambda: (gate / "started").exists(), "the cell to hold the GIL")
        workers = _workers(driver.pid)
        assert len(workers) == 1
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        _wait_for(lambda: not _alive(workers[0]), "the worker to die with its driver", 10)
    finally:
        _end([driver], workers)


@pytest.mark.slow
def test_a_worker_started_from_a_thread_that_ends_lives_on(tmp_path):
    # the kernel's parent-death signal follows the thread that forked a worker: one
    # started from a short-lived thread (as under Dask) must not die when that thread does
    from densbench.runner.supervise import SupervisedWorker

    worker = SupervisedWorker(threads=1)
    cell = Cell(Spec("diag_gaussian"), Spec("banana", SMALL_BANANA), 0, timeout_s=120,
                sample_metrics=False)
    try:
        starter = threading.Thread(target=worker.submit, args=(cell,))
        starter.start()
        starter.join()
        while (record := worker.poll()) is None:
            time.sleep(0.05)
        assert record["status"] == "ok", record["error"]
        assert worker.run(cell)["status"] == "ok"  # the same process, still alive
    finally:
        worker.close()


@pytest.mark.slow
def test_floors_do_not_hold_up_the_limits_of_running_cells(tmp_path, monkeypatch):
    # while the driver computes a floor (here: until the other cell's worker is gone, at
    # most PATIENCE_S), a cell over its CPU budget in another worker is still stopped
    from densbench.runner import floors

    gate = tmp_path / "gate"
    gate.mkdir()
    ok = Cell(Spec("diag_gaussian"), Spec("banana", SMALL_BANANA), 0)
    spin = Cell(Spec(_faulty(tmp_path, "SpinsOnceOpen"), {"gate": str(gate)}),
                Spec("banana", SMALL_BANANA), 1, timeout_s=1.0, sample_metrics=False)
    seen = {}
    real = floors.floor_metrics

    def slow_floor(cell):
        _wait_for(lambda: (gate / "started").exists(), "the spinning cell to start")
        pids = _workers(os.getpid())
        gated.open_gate(gate)  # it spins from now on, over its budget within a second
        try:
            _wait_for(lambda: not all(map(_alive, pids)), "a worker to be stopped")
            seen["stopped_during_floor"] = True
        except AssertionError:
            seen["stopped_during_floor"] = False
        return real(cell)

    monkeypatch.setattr(floors, "floor_metrics", slow_floor)
    store = RunStore(tmp_path / "r", create=True)
    run_cells([ok, spin], store, workers=2)
    assert seen == {"stopped_during_floor": True}
    rec = store.read(spin.id)
    assert rec["status"] == "timeout" and rec["usage"]["limit"] == "cpu"
    assert store.read(ok.id)["floor"]["seconds"] > 0


@pytest.mark.slow
def test_a_second_ctrl_c_stops_the_cells_at_once_and_computes_no_more_floors(tmp_path,
                                                                           monkeypatch):
    # Two gated cells open, one held. While the driver computes the first record's floor
    # with the second record waiting behind it and the held cell running, two Ctrl-Cs
    # arrive: the driver raises nothing where it happens to be (run_cells returns), the
    # held cell's worker is ended at once, and the waiting record is written without its
    # floor instead of after computing it (minutes, for 784-D data on a busy machine)
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Python delivers signals to the main thread only")
    from densbench.runner import execute, floors

    gate = tmp_path / "gate"
    gate.mkdir()
    for seed in (0, 1):
        gated.open_gate(gate, seed)
    cells = [Cell(Spec(gated.SPEC, {"gate": str(gate)}), Spec("banana", SMALL_BANANA), s)
             for s in range(3)]
    handed, computed = [], []
    hand_over, real_floor = execute._Recorder.__call__, floors.floor_metrics

    def counted(self, cell, record):
        handed.append(cell.seed)
        return hand_over(self, cell, record)

    def floor_during_two_ctrl_c(cell):
        computed.append(cell.seed)
        _wait_for(lambda: len(handed) == 2 and 2 in gated.started(gate),
                  "the other record and the held cell")
        held = _workers(os.getpid())
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the main thread's handler runs between the two
        _wait_for(lambda: not any(map(_alive, held)), "the held cell's worker to end", 30)
        return real_floor(cell)

    monkeypatch.setattr(execute._Recorder, "__call__", counted)
    monkeypatch.setattr(floors, "floor_metrics", floor_during_two_ctrl_c)
    store = RunStore(tmp_path / "r", create=True)
    summary = run_cells(cells, store, workers=2)
    assert summary.interrupted and summary.ok == 2 and len(computed) == 1
    first, second = (store.read(cells[seed].id) for seed in handed)
    assert first["status"] == second["status"] == "ok"
    assert first["floor"]["seconds"] > 0 and "floor" not in second
    assert second["floor_error"] == "not computed: the run was interrupted first"
    assert not store.path(cells[2].id).exists()  # stopped, not recorded: a re-run runs it


def test_ctrl_c_during_the_set_up_stops_the_run_before_its_first_cell(tmp_path, monkeypatch):
    # two Ctrl-Cs while the driver sets up (here: as it makes its executor, after the
    # manifest names the run): no exception lands in whatever it is importing, no worker
    # starts, the run ends interrupted with nothing recorded
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Python delivers signals to the main thread only")
    from densbench.runner import execute

    make = execute.make_executor

    def make_after_two_ctrl_c(cells, options):
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        return make(cells, options)

    monkeypatch.setattr(execute, "make_executor", make_after_two_ctrl_c)
    store = RunStore(tmp_path / "r", create=True)
    cell = Cell(Spec("diag_gaussian"), Spec("banana", SMALL_BANANA), 0)
    summary = execute.run_cells([cell], store, workers=1)
    assert summary.interrupted and summary.ok == 0 and not summary.failed
    assert not store.path(cell.id).exists() and _workers(os.getpid()) == []


def _busy(n: int, cpu: int) -> list[subprocess.Popen]:
    """``n`` CPU-bound processes pinned to core ``cpu``."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                             preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
            for _ in range(n)]


QUICK_LIKE = """
name = "quick-like"
[budget]
cell_timeout_s = 3
[[datasets]]
name = "banana"
[datasets.params]
n_train = 2000
n_val = 500
n_test = 2000
[[estimators]]
name = "{burns}"
[estimators.params]
gate = "{gate}"
seconds = 0.7
[[estimators]]
name = "diag_gaussian"
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")
def test_quick_cells_pass_their_cpu_budget_beside_8_busy_processes(tmp_path):
    # cells of the quick suite's kind, with sample metrics and their floor, under a CPU
    # budget of 3 s, on one core shared with 8 CPU-bound processes: each wall-clock second
    # gives a cell about a tenth of a second, so the first cell (0.7 s of CPU time, plus its
    # scoring) passes 3 s of wall clock whatever the machine's speed, as a wall-clock
    # limit would count it; its CPU time stays what its work costs. The busy processes
    # start once the worker is up and the first cell waits at its gate, and end with the
    # last record (the start-up and the summary are not what this checks)
    gate, out, suite = tmp_path / "gate", tmp_path / "run", tmp_path / "quick_like.toml"
    gate.mkdir()
    suite.write_text(QUICK_LIKE.format(burns=_faulty(tmp_path, "Burns"), gate=gate))
    cpu, busy = max(os.sched_getaffinity(0)), []
    driver = subprocess.Popen(
        [sys.executable, "-m", "densbench", "run", "--no-progress", "--suite", str(suite),
         "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=ENV, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    try:
        _wait_for(lambda: (gate / "started").exists(), "the first cell to start")
        busy = _busy(8, cpu)
        gated.open_gate(gate)
        _wait_for(lambda: len(_records(out)) == 2 or driver.poll() is not None,
                  "both records")
        _end(busy, [])
        stdout, stderr = driver.communicate(timeout=PATIENCE_S)
    finally:
        _end([driver, *busy], [])
    assert driver.returncode == 0, stdout[-2000:] + stderr[-2000:]
    records = list(_records(out).values())
    assert len(records) == 2 and {r["status"] for r in records} == {"ok"}
    for rec in records:  # one core: the budget is the cell's CPU seconds
        assert rec["usage"]["threads"] == 1 and rec["usage"]["limit"] is None
        assert "floor" in rec


@contextlib.contextmanager
def _dask_cluster(tmp_path: Path, idle_s: float) -> Iterator[tuple[str, subprocess.Popen]]:
    """A Dask scheduler and one worker (one thread, no nanny) on 127.0.0.1, started as a
    cluster's owner would, that end its idle densbench children after ``idle_s``: the
    scheduler's address and the worker's process. Both are ended afterwards, by pid."""
    info = tmp_path / "scheduler.json"
    env = {**ENV, "DENSBENCH_DASK_IDLE_S": str(idle_s)}
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(info)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        address = _wait_for(lambda: info.exists() and info.stat().st_size
                            and json.loads(info.read_text())["address"], "the scheduler")
        procs.append(subprocess.Popen(
            ["dask", "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--host", "127.0.0.1"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        yield address, procs[1]
    finally:
        children = _descendants(procs[-1].pid)
        _end(procs, children)


def _cell_children(pid: int) -> list[int]:
    return [p for p in _descendants(pid) if b"densbench.runner.worker" in _cmdline(p)]


@pytest.mark.slow
def test_an_external_dask_cluster_keeps_no_idle_children_after_a_run(tmp_path):
    pytest.importorskip("distributed")
    with _dask_cluster(tmp_path, idle_s=2) as (address, dask_worker):
        # a run that ends as it should ends its children itself
        store = RunStore(tmp_path / "r", create=True)
        cell = Cell(Spec("diag_gaussian"), Spec("banana", SMALL_BANANA), 0,
                    sample_metrics=False)
        assert run_cells([cell], store, executor="dask", scheduler=address).ok == 1
        assert _cell_children(dask_worker.pid) == []
        # a driver killed mid-run cannot: the cluster ends the child once it is idle
        gate = tmp_path / "gate"
        gate.mkdir()
        driver = _start("--suite", str(_suite(tmp_path, seeds=1, gate=gate)), "--executor",
                        "dask", "--scheduler", address, "--out", str(tmp_path / "run"))
        try:
            _wait_for(lambda: gated.started(gate) == {0}, "the cell to start")
            assert len(_cell_children(dask_worker.pid)) == 1
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait()
        finally:
            _end([driver], [])
        gated.open_gate(gate)  # the cell finishes on the cluster, for nobody
        _wait_for(lambda: not _cell_children(dask_worker.pid), "the idle child to end", 60)
