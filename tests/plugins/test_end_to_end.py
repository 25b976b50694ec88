"""The issue's done-when: a model in a user's file and data in a .npy and a .csv run through
``densbench run`` in-process, on a local pool and on Dask with identical figures, and
``report`` and ``compare`` work from another directory once the user's files are gone."""

from __future__ import annotations

import json
import os
import shutil
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
