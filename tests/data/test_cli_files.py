"""The command line with file-based datasets: ``list`` from declarations only, a missing or
wrong file refused in one line (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import densbench as db
from densbench.data import root as R
from tests.data.formats import write_idx_set

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (R.ENV_ROOT, R.ENV_VERIFY)}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return {**env, **extra}


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "densbench", *args], capture_output=True,
                          text=True, env=_env(**env), timeout=300, cwd=REPO)


def test_list_imports_no_estimator_module_and_loads_no_dataset(tmp_path):
    code = ("import json, sys; from densbench.cli import main; rc = main(['list', "
            f"'--data-root', {str(tmp_path)!r}]); print(json.dumps([rc, sorted(sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(), timeout=120, check=True).stdout
    rc, modules = json.loads(out.splitlines()[-1])
    assert rc == 0
    ours = [m for m in modules if m.startswith("densbench.")]
    assert not [m for m in ours if m.startswith("densbench.estimators.")], ours
    loaders = {t.partition(":")[0] for t in db.data.REGISTRY.targets().values()}
    assert not loaders & set(modules), "a dataset loader module was imported"
    assert not {"torch", "sklearn", "scipy", "numpy", "pandas"} & set(modules)


def _rows(out: str) -> dict[str, str]:
    return {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}


def test_list_shows_present_and_missing_and_never_fails(tmp_path):
    write_idx_set(tmp_path / "mnist")
    res = cli("list", "--data-root", str(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = _rows(res.stdout)
    assert "[present]" in lines["mnist"]
    assert "[missing]" in lines["cifar10"] and "[missing]" in lines["uci_power"]
    assert "[built-in]" in lines["mnist5k"] and "[built-in]" in lines["banana"]
    assert f"data root: {tmp_path}" in res.stdout
    env_res = cli("list", DENSBENCH_DATA_ROOT=str(tmp_path))  # the variable does the same
    assert "[present]" in _rows(env_res.stdout)["mnist"]


def test_run_with_a_missing_file_exits_2_naming_it(tmp_path):
    res = cli("run", "--estimators", "gaussian", "--datasets", "uci_miniboone",
              "--data-root", str(tmp_path), "--out", str(tmp_path / "run"))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert f"{tmp_path}/uci_miniboone/data.npy: missing" in res.stderr
    assert "zenodo.org/record/1161203" in res.stderr
    assert not (tmp_path / "run" / "cells").exists()  # nothing was started


def test_run_with_a_file_that_fails_its_checksum_exits_2(tmp_path):
    write_idx_set(tmp_path / "mnist")
    res = cli("run", "--estimators", "gaussian", "--datasets", "mnist",
              "--data-root", str(tmp_path), "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "train-images-idx3-ubyte.gz: wrong MD5 checksum" in res.stderr
    assert "expected MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873" in res.stderr
