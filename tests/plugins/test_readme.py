"""The README's "Compare your model" example, run exactly as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text()
    part = re.search(r"<!-- compare-your-model: begin.*?-->(.*?)<!-- compare-your-model: end",
                     text, re.S)
    assert part, "README lost its 'Compare your model' example"
    blocks = re.findall(r"```bash\n(.*?)```", part.group(1), re.S)
    assert blocks
    return "\n".join(blocks)


@pytest.mark.slow
def test_compare_your_model_runs_as_written(tmp_path):
    bindir = tmp_path / "bin"  # `python` and `densbench` are this interpreter's
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    (bindir / "densbench").write_text(f"#!/bin/sh\nexec {sys.executable} -m densbench \"$@\"\n")
    (bindir / "densbench").chmod(0o755)
    root = str(README.parent)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(["bash", "-e", "-c", _example()], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "3 cells: 3 ran (3 ok, 0 failed)" in res.stdout
    report = (tmp_path / "mine" / "report.md").read_text()
    assert "mymodel.py:Isotropic" in report and "KernelDensity" in report
