"""The issue's done-when: a model in a user's file and data in a .npy and a .csv run through
``densbench run`` with one worker, on a local pool and on Dask with identical figures, and
``report`` and ``compare`` work from another directory once the user's files are gone."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from tests.plugins.test_estimator_specs import MODEL

SUITE = """
name = "mine"
[samples]
n = 40
[[estimators]]
name = "usermodel.py:Iso"
[[estimators]]
name = "sklearn.neighbors:KernelDensity"
[estimators.params]
bandwidth = 0.5
[[datasets]]
name = "d.npy"
[[datasets]]
name = "d.csv"
"""


def _densbench(args, cwd, env):
    return subprocess.run([sys.executable, "-m", "densbench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _figures(run):
    out = {}
    for f in sorted((run / "cells").glob("*.json")):
        rec = json.loads(f.read_text())
        assert rec["status"] == "ok", rec.get("error")
        key = (rec["estimator"]["name"], os.path.basename(rec["dataset"]["name"]))
        out[key] = (rec["per_example"]["test_loglik"],
                    {m["metric"]: m["value"] for m in rec["metrics"]
                     if "loglik" in m["metric"]})
    return out


@pytest.mark.slow
def test_user_model_and_files_in_every_executor_then_reports_without_them(tmp_path):
    pytest.importorskip("distributed")
    user, runs, elsewhere = tmp_path / "user", tmp_path / "runs", tmp_path / "elsewhere"
    for d in (user, runs, elsewhere):
        d.mkdir()
    (user / "usermodel.py").write_text(textwrap.dedent(MODEL))
    X = np.random.default_rng(0).normal(size=(150, 2)) * [1.0, 0.5]
    np.save(user / "d.npy", X)
    pd.DataFrame(X, columns=["a", "b"]).to_csv(user / "d.csv", index=False)
    (user / "s.toml").write_text(SUITE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    for out, extra in (("w1", []), ("w2", ["--workers", "2"]),
                       ("dask", ["--executor", "dask", "--workers", "2"])):
        res = _densbench(["run", "--suite", "s.toml", "--out", str(runs / out),
                          "--no-progress", *extra], user, env)
        assert res.returncode == 0, res.stderr[-2000:]
    first = _figures(runs / "w1")
    assert len(first) == 4
    assert _figures(runs / "w2") == first and _figures(runs / "dask") == first
    for est in ("usermodel.py:Iso", "sklearn.neighbors:KernelDensity"):  # .npy == .csv
        a = [v for (e, d), v in first.items() if e.endswith(est) and d == "d.npy"]
        b = [v for (e, d), v in first.items() if e.endswith(est) and d == "d.csv"]
        assert a == b
    shutil.rmtree(user)
    res = _densbench(["report", str(runs / "w1")], elsewhere, env)
    assert res.returncode == 0, res.stderr
    report = (runs / "w1" / "report.md").read_text()
    assert "usermodel.py:Iso" in report and "KernelDensity" in report
    res = _densbench(["compare", str(runs / "w1"), str(runs / "dask")], elsewhere, env)
    assert res.returncode == 0, res.stderr
    assert "4 cells ok in both runs" in res.stdout and "4 unchanged" in res.stdout


LOOPS_AT_IMPORT = "while True:  # a plugin that never finishes importing\n    pass\n"
HELPER = "def spread(X):\n    return X.var()\n"
HANG_SUITE = """
name = "hang"
[budget]
cell_timeout_s = 3
[samples]
metrics = false
[[datasets]]
name = "banana"
[datasets.params]
n_train = 200
n_val = 50
n_test = 50
[[estimators]]
name = "hang.py:Model"
[[estimators]]
name = "model_beside.py:Iso"
[[estimators]]
name = "diag_gaussian"
"""


def _run_killing_its_group(args, cwd, env, timeout):
    """``args`` in a process group of its own, all of which is killed if it runs past
    ``timeout`` (so that a hang fails the test instead of hanging it)."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, process_group=0)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{' '.join(args[-6:])} still running after {timeout} s")
    return proc.returncode, out, err


@pytest.mark.slow
def test_a_plugin_that_loops_at_import_times_out_alone(tmp_path):
    """The planner imports a plugin only in a child process under a cell's limits: one
    that loops at import is recorded as timeouts, with the reason, and the rest of the run
    goes on (among it a file that imports the module beside it, in every process)."""
    (tmp_path / "hang.py").write_text(LOOPS_AT_IMPORT)
    (tmp_path / "helper_beside.py").write_text(HELPER)
    (tmp_path / "model_beside.py").write_text(textwrap.dedent(MODEL).replace(
        "import numpy as np\n", "import numpy as np\nfrom helper_beside import spread\n"
    ).replace("X.var()", "spread(X)"))
    (tmp_path / "s.toml").write_text(HANG_SUITE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    rc, out, err = _run_killing_its_group(
        [sys.executable, "-m", "densbench", "run", "--suite", "s.toml", "--out", "out",
         "--no-progress"], tmp_path, env, timeout=180)
    assert rc == 1, err[-2000:]
    recs = {os.path.basename(r["estimator"]["name"]): r for r in
            (json.loads(f.read_text()) for f in (tmp_path / "out" / "cells").glob("*.json"))}
    assert sorted(recs) == ["diag_gaussian", "hang.py:Model", "model_beside.py:Iso"]
    hang = recs.pop("hang.py:Model")
    assert hang["status"] == "timeout"
    assert re.fullmatch(r"estimator \S*hang.py:Model was not run: importing and checking it "
                        r"\(in a separate process, before the run\) took more CPU time than "
                        r"the cell budget of 3 s", hang["error"]), hang["error"]
    assert all(r["status"] == "ok" for r in recs.values()), recs
    assert "hang.py:Model was not run" in out
