"""The command line: bad input exits 2 with one line; a killed run resumes losslessly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from densbench.cli import main
from densbench.runner.execute import COST_METRICS
from densbench.runner.store import load
from tests import gated

COST = set(COST_METRICS)


def run_cli(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "densbench", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def test_list_shows_every_estimator_and_dataset(capsys):
    import densbench as db

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in db.estimators.names() + db.data.names():
        assert f"  {name} " in out


def test_list_marks_an_unreadable_data_folder_and_lists_the_rest(tmp_path):
    """A dataset folder its user may not read (a real one; as root, the command runs
    without the capabilities that bypass file permissions): its line says so and why,
    every other line is there, exit 0."""
    import shutil

    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    (root / "mnist").chmod(0)
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop its file capabilities")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    try:
        res = subprocess.run([*prefix, sys.executable, "-m", "densbench", "list",
                              "--data-root", str(root)], capture_output=True, text=True,
                             timeout=120)
    finally:
        (root / "mnist").chmod(0o755)
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines()
             if line.startswith("  ")}
    assert "[unreadable: Permission denied: " in lines["mnist"], lines["mnist"]
    assert "[missing]" in lines["cifar10"] and "[built-in]" in lines["banana"]
    assert res.stderr == ""


@pytest.mark.parametrize("args, message", [
    (["run", "--estimators", "nope", "--datasets", "banana"], "unknown estimator 'nope'"),
    (["run", "--estimators", "kde", "--datasets", "nope"], "unknown dataset 'nope'"),
    (["run", "--suite", "{bad}"], "not valid TOML"),
    (["run", "--quick", "--out", "{tmp}/no/such/dir"], "parent does not exist"),
    (["run"], "choose what to run"),
    (["run", "--quick", "--workers", "0"], "--workers"),
    (["run", "--quick", "--seeds", "x"], "invalid int value"),
    (["frobnicate"], "invalid choice"),
    (["run", "--quick", "--scheduler", "tcp://h:1"], "--scheduler needs --executor dask"),
    (["run", "--quick", "--executor", "ray"], "invalid choice"),
    (["report", "{tmp}/missing"], "no such run folder"),
    (["run", "--quick", "--device", "gpu"], "device must be cpu, cuda or cuda:N; got 'gpu'"),
    (["run", "--quick", "--cell-memory-mb", "0"], "--cell-memory-mb must be > 0"),
    (["run", "--suite", "{device}"], "estimator maf: 'device' is a setting of the run"),
])
def test_bad_input_exits_2_with_one_line(args, message, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [\n")
    device = tmp_path / "device.toml"
    device.write_text('[[datasets]]\nname = "banana"\n[[estimators]]\nname = "maf"\n'
                      '[estimators.params]\ndevice = "cuda"\n')
    args = [a.replace("{bad}", str(bad)).replace("{tmp}", str(tmp_path))
            .replace("{device}", str(device)) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("densbench: error: "), err
    assert message in err
    assert "Traceback" not in err


def test_bad_input_through_the_console_script(tmp_path):
    res = run_cli("run", "--estimators", "kde,nope", "--datasets", "banana",
                  "--out", str(tmp_path / "r"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists(), "nothing is written for a rejected command"


def test_the_command_exits_with_main_s_code_and_without_a_last_collection(monkeypatch,
                                                                          capsys):
    # what the console script and ``python -m densbench`` call: main's exit code, with the
    # heap set aside from the interpreter's exit collection (a second per command)
    import gc
    import tomllib

    from densbench import cli

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert scripts["project"]["scripts"]["densbench"] == "densbench.cli:console_main"
    monkeypatch.setattr(sys, "argv", ["densbench", "list", "--nope"])
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as exited:
            cli.console_main()
        assert exited.value.code == 2 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


def _science(run: Path) -> pd.DataFrame:
    df = load(run)
    df = df[~df["metric"].isin(COST)]
    # The run's own columns (its folder name, commit, machine) differ by design.
    return df.drop(columns=["error", "run", "commit", "machine"]).reset_index(drop=True)


#: Cells of a few hundred rows (the point is the runner, not the quick suite's sizes), the
#: discrete digits among them; the gated estimator (tests/gated.py) holds the run at a known
#: point: in plan order (datasets, then estimators) 3 cells done, the 4th in flight, 3 to come.
RESUME_SUITE = """
name = "resume"
[samples]
n = 100
[[datasets]]
name = "banana"
[datasets.params]
n_train = 300
n_val = 100
n_test = 300
[[datasets]]
name = "digits"
[[estimators]]
name = "gaussian"
[[estimators]]
name = "kde"
[estimators.params]
bandwidth = "cv"
[[estimators]]
name = "gmm"
[estimators.params]
n_components = [1, 2]
[[estimators]]
name = "{gated}"
datasets = ["digits"]
[estimators.params]
gate = "{gate}"
"""
# Cells are handed out longest first (runner/schedule.py: ties keep the suite's order); on
# a fresh run the prior ranks the 64-D digits cells above the 2-D banana ones, so the gated
# cell is the fourth: exactly three cells (gaussian, kde and gmm on digits) finish first.


@pytest.mark.slow
def test_killed_run_resumes_without_loss_or_rework(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    suite = tmp_path / "resume.toml"
    suite.write_text(RESUME_SUITE.format(gated=gated.SPEC, gate=gate))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "densbench", "run", "--suite", str(suite),
                             "--out", str(out), "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    cells = out / "cells"
    deadline = time.time() + 240
    while time.time() < deadline and not gated.started(gate) and proc.poll() is None:
        time.sleep(0.05)
    # A finished cell's record may wait for its floor, computed beside the next cell: the
    # gated cell holds, so wait for the three records before the kill.
    while time.time() < deadline and len(list(cells.glob("*.json"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_bytes() for p in cells.glob("*.json")}
    assert len(before) == 3, "the run should have finished the 3 cells before the gated one"

    gated.open_gate(gate)
    res = run_cli("run", "--suite", str(suite), "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "7 cells: 4 ran (4 ok, 0 failed), 3 already done" in res.stdout
    after = {p.name: p.read_bytes() for p in cells.glob("*.json")}
    for name, content in before.items():  # nothing finished is lost or computed again
        assert after[name] == content
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["invocations"]) == 2

    fresh = tmp_path / "fresh"
    res = run_cli("run", "--suite", str(suite), "--out", str(fresh), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert len(after) == len(list((fresh / "cells").glob("*.json"))) == 7
    pd.testing.assert_frame_equal(_science(out), _science(fresh), check_exact=False,
                                  rtol=1e-12, atol=1e-12)



def test_a_reader_that_goes_away_ends_the_command_quietly():
    """``densbench list | head -2``: once the reader has closed the pipe, the command stops
    without an error line or a traceback (exit 128 + SIGPIPE, as a shell tool would)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line is written
    try:
        res = subprocess.run([sys.executable, "-m", "densbench", "list"], stdout=write_end,
                             stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert res.stderr == ""
    assert res.returncode == 128 + signal.SIGPIPE
