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
[samples]
metrics = false
[[datasets]]
name = "banana"
[datasets.params]
n_train = 300
n_val = 300
n_test = 300
[[estimators]]
name = "{estimator}"
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
    path.write_text(SUITE.format(seeds=seeds, estimator=estimator, params=params))
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
    assert rec["status"] == "timeout"
    assert rec["error"] == "cell exceeded its time budget of 0.5 s"
    ok = store.read(fast.id)
    assert ok["status"] == "ok" and (summary.ok, len(summary.failed)) == (1, 1)
    # the cells ran in a supervised child of the Dask worker, replaced after the timeout,
    # and ended with the cluster
    assert ok["pid"] != os.getpid() and ok["pid"] != rec["pid"]
    _wait_for(lambda: not _alive(ok["pid"]), "the supervised child to exit", 30)
