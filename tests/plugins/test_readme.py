"""Every command the README and docs/ show parses against the CLI, every link leads to a file,
.ci/run runs the README's set-up and test command (tests/plugins/test_readme_runs.py runs
the README's commands and code blocks)."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.plugins.test_readme_runs import readme_steps, shell_commands

README = Path(__file__).resolve().parents[2] / "README.md"


# --- every command the README shows parses, every link it gives leads somewhere -------------

ROOT = README.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _densbench_commands(path: Path) -> list[list[str]]:
    """Each `densbench ...` command of the file's shell blocks and prose, as its arguments
    (a line chained with && or ; gives each of its commands)."""
    return [words[1:] for step in readme_steps(path) for words in shell_commands(step)
            if words[:1] == ["densbench"]]


def _parses(args: list[str]) -> str | None:
    """None when the CLI's own parser takes ``args``, else its one-line complaint. Flags
    must be spelled out: argparse would take a prefix (``--worker``) the README should not
    teach."""
    import argparse

    from densbench.cli import UsageError, _build_parser

    parser = _build_parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    for each in parsers:
        each.allow_abbrev = False
    try:
        parser.parse_args(args)
    except UsageError as exc:
        return str(exc)
    return None


def test_every_readme_densbench_command_parses():
    commands = _densbench_commands(README)
    assert {c[0] for c in commands} >= {"list", "run", "report", "compare"}, commands
    for doc in DOCS:
        commands += _densbench_commands(doc)
    bad = {" ".join(c): err for c in commands if (err := _parses(c)) is not None}
    assert not bad, f"commands the CLI refuses: {bad}"


def test_a_mistyped_flag_is_caught(tmp_path):
    doc = tmp_path / "README.md"
    doc.write_text("```bash\ndensbench run --all --wokers 2  # a typo\n"
                   "densbench run --all --worker 2   # a prefix\n"
                   "densbench lsit                   # no such command\n```\n")
    typo, prefix, command = _densbench_commands(doc)
    assert "--wokers" in (_parses(typo) or "")
    assert "--worker" in (_parses(prefix) or "")
    assert "lsit" in (_parses(command) or "")
    assert _parses(["run", "--all", "--workers", "2"]) is None


def _links(path: Path) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    return [t.split("#")[0] for t in targets
            if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_every_relative_link_leads_to_a_file():
    for doc in [README, *DOCS]:
        missing = [t for t in _links(doc) if not (doc.parent / t).exists()]
        assert not missing, f"{doc.relative_to(ROOT)} links to missing files: {missing}"
    assert "docs/metrics.md" in _links(README)


def _words(line: str) -> list[str]:
    return [w for w in shlex.split(line) if w != "-q"]


def test_ci_runs_the_readme_set_up_and_test_command():
    script = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ")
    ci = [_words(line) for line in script.splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    test_block = next(s for s in readme_steps(README) if "pytest" in s.words)
    steps = [_words(s.text) for s in readme_steps(README) if s.line == test_block.line]
    for step in (s for s in steps if s[:2] in (["pip", "install"], ["python", "-m"])):
        assert step in ci, f".ci/run does not run the README's {' '.join(step)!r}"


def test_the_dask_hint_is_the_readmes(monkeypatch):
    """Without dask.distributed the executor's one-line error gives the install command
    the README gives for a checkout, and the one for an installed package."""
    from densbench.runner.executors.dask import DaskExecutor

    checkout = 'pip install -e ".[dask]"'
    assert checkout in README.read_text()
    monkeypatch.setitem(sys.modules, "distributed", None)  # importing it raises ImportError
    with pytest.raises(ValueError) as err:
        DaskExecutor(None)._connect()
    assert checkout in str(err.value) and "pip install 'densbench[dask]'" in str(err.value)


def test_every_name_in_the_readme_tables_is_registered():
    """The first column of the estimator and dataset tables names only what the registries
    hold (a backticked name, or a pattern such as ``uci_*`` that matches one). The tables
    are a newcomer's overview, not the registry: ``densbench list`` is the complete list,
    so a new estimator or dataset needs no README row to be tested and run."""
    import fnmatch

    import densbench as db

    known = {"estimator": db.estimators.names(), "dataset": db.data.names()}
    table, stale = None, []
    for line in README.read_text().splitlines():
        row = line.startswith("|")
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if row else []
        if not cells:
            table = None
        elif table is None:
            table = cells[0] if cells[0] in known else ""
        elif table:
            stale += [(table, n) for n in re.findall(r"`([\w*]+)`", cells[0])
                      if not fnmatch.filter(known[table], n)]
    assert not stale, f"README tables name what no registry holds: {stale}"
    assert "densbench list" in README.read_text()
