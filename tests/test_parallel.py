"""run_workers: single-threaded PyTorch on each worker, the caller's setting untouched;
usable_cores: the process's CPU affinity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
import torch

from densbench.parallel import run_workers


def test_each_worker_runs_pytorch_on_one_thread_and_the_caller_keeps_its_count():
    torch.set_num_threads(2)
    try:
        seen = run_workers(lambda: (threading.get_ident(), torch.get_num_threads()), 2,
                           together=True)
        assert [n for _, n in seen] == [1, 1]
        assert len({ident for ident, _ in seen}) == 2
        assert torch.get_num_threads() == 2
        assert run_workers(torch.get_num_threads, 1) == [1]  # in this thread, on one
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_an_exception_in_a_worker_reaches_the_caller():
    def fail():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_workers(fail, 2)


def test_the_callers_own_exception_wins_and_no_call_outlives_the_run():
    caller = threading.get_ident()
    finished = []

    def fail():
        if threading.get_ident() == caller:
            raise KeyError("caller")
        threading.Event().wait(0.2)  # the worker is still busy when the caller fails
        finished.append(True)
        raise ValueError("worker")

    with pytest.raises(KeyError, match="caller"):
        run_workers(fail, 2, together=True)
    assert finished == [True]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2,
                    reason="needs CPU affinity and at least 2 cores")
def test_threads_follow_the_cores_the_process_was_given_not_the_machines():
    # a process pinned to one core (as by taskset or a batch scheduler) runs one thread per
    # worker, where os.cpu_count() would give every worker all of the machine's cores
    code = ("from densbench.parallel import usable_cores\n"
            "from densbench.runner.executors import RunOptions\n"
            "print(usable_cores(), RunOptions(workers=1).threads_per_worker)")
    pinned = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    assert pinned.stdout.split() == ["1", "1"]
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    cores = len(os.sched_getaffinity(0))
    assert free.stdout.split() == [str(cores), str(cores)]


def test_the_default_worker_count_is_one_per_core_bounded_by_memory(monkeypatch):
    from densbench import parallel

    monkeypatch.setattr(parallel, "usable_cores", lambda: 8)
    assert parallel.default_workers(memory_mb=64 * 1024) == 8
    assert parallel.default_workers(memory_mb=3.5 * parallel.WORKER_MEMORY_MB) == 3
    assert parallel.default_workers(memory_mb=10.0) == 1
    monkeypatch.setattr(parallel, "available_memory_mb", lambda: None)
    assert parallel.default_workers() == 8  # no figure from the OS: the cores decide


def test_available_memory_is_the_os_figure():
    from densbench.parallel import available_memory_mb

    mb = available_memory_mb()
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as fh:
            kb = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:"))
        assert mb is not None and abs(mb - kb / 1024) < 512  # read a moment apart
    else:
        assert mb is None


def test_a_run_without_workers_starts_one_per_core(tmp_path):
    # the README's plain commands: one single-threaded worker per usable core (memory
    # allowing), recorded in the run's manifest
    from densbench.parallel import default_workers

    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "densbench", "run", "--estimators", "gaussian",
                    "--datasets", "banana", "--seeds", "1", "--out", str(out),
                    "--no-progress"], capture_output=True, text=True, check=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["invocations"][-1]["workers"] == default_workers()
