"""Every command and code block of README.md, run as a newcomer would: in README order, in
one temporary working directory, each command as written (real processes).

How each one is run is decided in one place, :data:`HOW`, by the command's first words:

- commands that end in seconds run to the end and must exit 0; so do the code blocks (a
  shell block with a here-document as one ``bash -e`` script, a Python block with
  ``python -c``), after the commands above them;
- the runs that take minutes to hours (``run --all``, the ``images`` and ``published``
  suites, a selection of the default suite, ...) run as written until they have planned
  their suite and begun handing out cells, and the smoke run until it has stored its first
  record; then they get a Ctrl-C (SIGINT to the process group, as a terminal sends it; a
  second one if the running cells go on) and must do what the README and docs/running.md
  say: exit 130, keep every finished record valid and readable
  (``densbench.results.load``) and say how to resume;
- ``densbench fetch`` runs against a local HTTP server (:func:`fetched`);
- set-up commands (``python3 -m venv``, ``pip install``) and the test command are not run
  here (:data:`NOT_RUN`): ``.ci/run`` runs them in a fresh environment, and
  ``test_readme.test_ci_runs_the_readme_set_up_and_test_command`` holds it to the README's.

What a command presumes the reader has (a suite file, a data root, a Dask scheduler, two runs
to compare) is provided by :data:`GIVEN`. A command or block that matches nothing in
:data:`HOW` fails the test: the README cannot gain a command that no test runs.

The docs/ pages' commands are parsed against the CLI's parser (``test_readme.py``), not run:
most of them are variations of these at other scales, and running them would cost minutes;
:func:`readme_steps` takes any Markdown file should one be worth running.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

#: Commands not run here, each with why (a prefix of the command's words).
NOT_RUN: dict[tuple[str, ...], str] = {
    ("python3", "-m", "venv"): "set-up: .ci/run makes a fresh virtual environment",
    (".", ".venv/bin/activate"): "set-up: .ci/run activates its fresh virtual environment",
    ("pip", "install"): "set-up: .ci/run installs the checkout with its test extras "
                        "(which include the dask extra)",
    ("python", "-m", "pytest"): "the test suite itself: .ci/run runs it",
}

#: How long a command may take, at most, in each way of running it (seconds).
TIMEOUT = 300


@dataclass(frozen=True)
class Step:
    """One command or code block of a Markdown file, as written."""

    line: int   # where it starts in the file, for messages
    kind: str   # "command", "script" (a shell block with a here-document), or a language
    text: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text) if self.kind == "command" else []


#: Shell words that join commands on a line.
_OPERATORS = ("&&", ";", "||", "|")


def _split(words: list[str]) -> list[list[str]]:
    """A command line's words as its commands (split at ``&&``, ``;``, ``||``, ``|``)."""
    commands, part = [], []
    for word in [*words, "&&"]:
        if word in _OPERATORS:
            if part:
                commands.append(part)
            part = []
        else:
            part.append(word)
    return commands


def _commands(block: str, first_line: int) -> list[Step]:
    """A shell block's commands, one step each (continuations joined, comments dropped, a
    line chained with ``&&`` or ``;`` split into its commands; a pipeline is one script)."""
    steps = []
    for offset, line in enumerate(block.replace("\\\n", " ").split("\n")):
        words = shlex.split(line, comments=True)
        if "|" in words or "||" in words:
            steps.append(Step(first_line + offset, "script", line))
        else:
            steps += [Step(first_line + offset, "command", shlex.join(command))
                      for command in _split(words)]
    return steps


def shell_commands(step: Step) -> list[list[str]]:
    """The words of each command ``step`` runs: a script's lines' commands, here-document
    bodies left out (they are file contents, not commands)."""
    if step.kind == "command":
        return [step.words]
    if step.kind != "script":
        return []
    commands, heredoc = [], None
    for line in step.text.replace("\\\n", " ").splitlines():
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        end = re.search(r"<<-?\s*'?\"?(\w+)", line)
        heredoc = end.group(1) if end else None
        commands += _split(shlex.split(line, comments=True))
    return commands


def readme_steps(path: Path) -> list[Step]:
    """Every fenced code block's commands (shell) or whole text (other languages), and each
    inline ``densbench``/``pip``/``python`` command that no block gives, in file order."""
    text = path.read_text()
    steps: list[Step] = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        lang, body = m.group(1) or "text", m.group(2)
        line = text.count("\n", 0, m.start()) + 2
        if lang in ("bash", "sh", "shell", "console"):
            steps += ([Step(line, "script", body)] if re.search(r"<<-?\s*'?\w", body)
                      else _commands(body, line))
        else:
            steps.append(Step(line, lang, body))
    prose = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text,
                   flags=re.S | re.M)
    seen = {s.text for s in steps}
    # an inline command names at least one argument ("`densbench compare`" names one)
    for m in re.finditer(r"`((?:densbench|pip|python3?)(?: [^` ]+){2,})`", prose):
        for step in _commands(m.group(1), prose.count("\n", 0, m.start()) + 1):
            if step.text not in seen:
                steps.append(step)
                seen.add(step.text)
    return sorted(steps, key=lambda s: s.line)


# -- what the commands presume the reader has -------------------------------------------


def _suite_file(ws: Workspace) -> str:
    """docs/running.md's example suite file, saved where the README's command reads it."""
    doc = (ROOT / "docs" / "running.md").read_text()
    (ws.cwd / "my_suite.toml").write_text(re.search(r"```toml\n(.*?)```", doc, re.S).group(1))
    return "my_suite.toml"


def _data_root(ws: Workspace) -> str:
    return str(ws.data)


def _scheduler(ws: Workspace) -> str:
    """A Dask LocalCluster on this machine, closed with the workspace."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=":0")
    ws.closers.append(cluster.close)
    return cluster.scheduler_address


def _copy_of_smoke_run(name: str) -> Callable[[Workspace], str]:
    def given(ws: Workspace) -> str:
        shutil.copytree(ws.cwd / "results" / "smoke", ws.cwd / name, dirs_exist_ok=True)
        return name

    return given


#: What a README command presumes the reader has, by the word that names it: how the test
#: provides it (the function returns the word to put in its place).
GIVEN: dict[str, Callable[[Workspace], str]] = {
    "my_suite.toml": _suite_file,
    # the files a user places: small format-true files of every file dataset
    # (tests/data/formats.py); not the published files, so checksums are not verified
    "/data/densbench": _data_root,
    "tcp://host:8786": _scheduler,
    # two runs to compare: the smoke run twice
    "results/before": _copy_of_smoke_run("results/before"),
    "results/after": _copy_of_smoke_run("results/after"),
}


class Workspace:
    """The reader's working directory and environment: a temporary folder that looks like a
    checkout (its ``results/`` exists), ``python`` and ``densbench`` this interpreter's and
    this checkout's, a data root of format-true files, one thread per process."""

    def __init__(self, tmp: Path) -> None:
        from tests.data.formats import write_all

        self.cwd, self.data, bindir = tmp / "work", tmp / "data", tmp / "bin"
        for folder in (self.cwd / "results", bindir):
            folder.mkdir(parents=True)
        write_all(self.data)
        # scripts, not links: a link to a virtual environment's python is not in it
        for name, run in (("python", ""), ("python3", ""), ("densbench", " -m densbench")):
            (bindir / name).write_text(f"#!/bin/sh\nexec {sys.executable}{run} \"$@\"\n")
            (bindir / name).chmod(0o755)
        self.env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
                    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                    "DENSBENCH_DATA_ROOT": str(self.data), "DENSBENCH_VERIFY_CHECKSUMS": "0",
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1"}
        self.env.pop("DENSBENCH_MIRROR", None)
        self.closers: list[Callable[[], object]] = []

    def words(self, step: Step) -> list[str]:
        return [GIVEN[w](self) if w in GIVEN else w for w in step.words]

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


# -- ways of running a command ----------------------------------------------------------


def _start(ws: Workspace, args: list[str]) -> subprocess.Popen:
    # a session of its own: a Ctrl-C goes to its whole process group, as from a terminal
    return subprocess.Popen(args, cwd=ws.cwd, env=ws.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _end(proc: subprocess.Popen) -> None:
    """Kill what is left of the command's process group (nothing, when all went well)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _said(proc: subprocess.Popen, timeout: float = TIMEOUT) -> tuple[str, str]:
    """The process's stdout and stderr once it has ended."""
    return proc.communicate(timeout=timeout)


def _report(proc: subprocess.Popen, out: str, err: str) -> str:
    return f"exit {proc.returncode}\n{out[-2000:]}\n{err[-2000:]}"


def _finished(ws: Workspace, args: list[str]) -> tuple[subprocess.Popen, str, str]:
    proc = _start(ws, args)
    try:
        out, err = _said(proc)
    finally:
        _end(proc)
    return proc, out, err


def to_the_end(ws: Workspace, step: Step) -> str | None:
    """Runs to the end; exit 0."""
    args = {"command": lambda: ws.words(step), "script": lambda: ["bash", "-e", "-c", step.text],
            "python": lambda: ["python", "-c", step.text]}[step.kind]()
    proc, out, err = _finished(ws, args)
    return None if proc.returncode == 0 else _report(proc, out, err)


def _records(ws: Workspace) -> set[Path]:
    return set(ws.cwd.glob("**/cells/*.json"))


def _invocations(ws: Workspace) -> dict[Path, int]:
    counts = {}
    for path in ws.cwd.glob("**/manifest.json"):
        try:
            counts[path.parent] = len(json.loads(path.read_text()).get("invocations", []))
        except ValueError:  # being replaced: read it at the next look
            pass
    return counts


#: Exit statuses of an interrupted run: 130, or killed by SIGINT (which a shell shows as
#: 130) when a second Ctrl-C lands as the run is already ending.
INTERRUPTED = (130, -signal.SIGINT)


def _interrupted(ws: Workspace, step: Step, ready: Callable[[], Path | None],
                 again_after: float) -> str | None:
    """Runs until ``ready()`` names the run folder, then Ctrl-C; a second Ctrl-C if the
    run is still going ``again_after`` seconds later. The run must exit 130
    saying how to resume, and every record in its folder must be valid and load."""
    from densbench.results import load
    from densbench.runner.store import RunStore

    proc = _start(ws, ws.words(step))
    try:
        deadline = time.monotonic() + TIMEOUT
        while (run := ready()) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                return "ended or timed out before it ran: " + _report(proc, *_said(proc, 30))
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=again_after)
        except subprocess.TimeoutExpired:  # its running cells go on: stop them too
            os.killpg(proc.pid, signal.SIGINT)
        out, err = _said(proc)
    finally:
        _end(proc)
    records, bad = RunStore(run).checked_records()
    loaded = load(run)["cell_id"].nunique() if records else 0
    if (proc.returncode not in INTERRUPTED or "re-run the same command to resume" not in err or bad
            or loaded != len(records)):
        return (f"{_report(proc, out, err)}\ninvalid records: {bad}; "
                f"{len(records)} records, {loaded} loaded")
    return None


def until_stored(ws: Workspace, step: Step) -> str | None:
    """Runs until its first record is stored, then Ctrl-C, and lets the running cells
    finish."""
    before = _records(ws)

    def ready() -> Path | None:
        new = _records(ws) - before
        return next(iter(new)).parents[1] if new else None

    return _interrupted(ws, step, ready, again_after=TIMEOUT)


def until_started(ws: Workspace, step: Step) -> str | None:
    """Runs until it has planned its suite and begun handing out cells (its invocation is
    in the run folder's manifest), then Ctrl-C, and a second one to stop the cells."""
    before = _invocations(ws)

    def ready() -> Path | None:
        return next((run for run, n in _invocations(ws).items() if n > before.get(run, 0)),
                    None)

    return _interrupted(ws, step, ready, again_after=1)


def _mirror_of_every_source(ws: Workspace, folder: Path) -> dict:
    """Every source's files, format-true (the workspace's data root), laid out under
    ``folder`` as their publishers' addresses are (archives built), and each source with
    the checksums of what is laid out in place of the published ones."""
    import dataclasses
    import hashlib
    import tarfile
    from urllib.parse import urlsplit

    from densbench.data.sources import SOURCES

    def md5(path: Path) -> str:
        return hashlib.md5(path.read_bytes()).hexdigest()

    def placed(url: str) -> Path:
        path = folder / urlsplit(url).path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    members: dict[str, list[tuple[Path, str]]] = {}
    for source in SOURCES.values():
        for spec in source.files:
            if source.archive:
                members.setdefault(source.archive.url, []).append(
                    (ws.data / source.folder / spec.path, source.members + spec.path))
            else:
                shutil.copy(ws.data / source.folder / spec.path, placed(source.file_url(spec)))
    for url, files in members.items():
        with tarfile.open(placed(url), "w:gz") as tar:
            for path, name in files:
                tar.add(path, arcname=name)
    patched = {}
    for key, source in SOURCES.items():
        files = tuple(dataclasses.replace(spec, digest=md5(ws.data / source.folder / spec.path))
                      if spec.digest else spec for spec in source.files)
        archive = source.archive and dataclasses.replace(
            source.archive, digest=md5(placed(source.archive.url)))
        patched[key] = dataclasses.replace(source, files=files, archive=archive)
    return patched


def fetched(ws: Workspace, step: Step) -> str | None:
    """``densbench fetch`` from a local HTTP server that ``$DENSBENCH_MIRROR`` names, serving
    every source's files, format-true. Its checksums are not the published ones, so the
    command runs in this process with the sources' checksums those of the files served;
    into an empty data root unless it names one. Exit 0, and the files of every dataset it
    names in place."""
    import contextlib
    import functools
    import io
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from densbench.cli import _build_parser, main
    from densbench.data.sources import SOURCES

    mirror = ws.cwd.parent / "mirror"
    patched = _mirror_of_every_source(ws, mirror)
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(mirror))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    words = ws.words(step)[1:]
    out, err = io.StringIO(), io.StringIO()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(ws.cwd)
            mp.setenv("DENSBENCH_DATA_ROOT", str(ws.cwd.parent / "fetched"))
            mp.setenv("DENSBENCH_MIRROR", f"http://127.0.0.1:{server.server_address[1]}")
            for key, source in patched.items():
                mp.setitem(SOURCES, key, source)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(words)
            args = _build_parser().parse_args(words)
            root = Path(args.data_root or os.environ["DENSBENCH_DATA_ROOT"])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    missing = [f"{name}/{spec.path}" for name in args.names if name in SOURCES
               for spec in SOURCES[name].files if not (root / name / spec.path).is_file()]
    if code != 0 or missing:
        return f"exit {code}, missing {missing}\n{out.getvalue()[-2000:]}\n{err.getvalue()}"
    return None


def on_a_gpu(ws: Workspace, step: Step) -> str | None:
    """With CUDA: as :func:`until_started`. Without: exit 2 in one line saying so."""
    import torch

    if torch.cuda.is_available():
        return until_started(ws, step)
    proc, out, err = _finished(ws, ws.words(step))
    one_line = proc.returncode == 2 and err.count("\n") == 1
    return None if one_line and "CUDA is not available" in err else _report(proc, out, err)


def not_run(reason: str) -> Callable[[Workspace, Step], str | None]:
    def not_run(ws: Workspace, step: Step) -> None:
        return None

    not_run.__doc__ = f"Not run: {reason}."
    return not_run


#: How each README command is run: the first entry whose words begin the command's. The
#: smoke run stores its first record (the runs to compare are copies of it); every other
#: run takes minutes to hours, its first cells minutes (the longest are handed out first):
#: those run until they have planned their suite and begun handing out cells.
HOW: list[tuple[tuple[str, ...], Callable[[Workspace, Step], str | None]]] = [
    *((prefix, not_run(reason)) for prefix, reason in NOT_RUN.items()),
    (("densbench", "run", "--all", "--device", "cuda"), on_a_gpu),
    (("densbench", "run", "--quick"), until_stored),
    (("densbench", "run"), until_started),
    (("densbench", "fetch"), fetched),
    (("densbench",), to_the_end),
]

#: How a code block that is not a list of commands is run, by its kind.
BLOCKS: dict[str, Callable[[Workspace, Step], str | None]] = {
    "script": to_the_end,   # a shell block with a here-document: one script, bash -e
    "python": to_the_end,   # python -c, after the commands above it
}


def how(step: Step) -> Callable[[Workspace, Step], str | None] | None:
    """The way ``step`` is run, or None if the test does not know it."""
    if step.kind != "command":
        return BLOCKS.get(step.kind)
    return next((run for prefix, run in HOW if tuple(step.words[:len(prefix)]) == prefix),
                None)


def walk(path: Path, ws: Workspace) -> list[str]:
    """Run every step of ``path`` in order; one message per step that failed."""
    failures = []
    for step in readme_steps(path):
        run = how(step)
        if run is None:
            failures.append(f"{path.name}:{step.line}: neither run nor listed as not run "
                            f"(tests/plugins/test_readme_runs.py HOW/BLOCKS): {step.text!r}")
            continue
        start = time.monotonic()
        said = run(ws, step)
        print(f"{path.name}:{step.line}: {run.__name__}: {time.monotonic() - start:.1f} s")
        if said is not None:
            failures.append(f"{path.name}:{step.line}: {step.text!r} ({run.__name__}): {said}")
    return failures


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path)
    try:
        yield ws
    finally:
        ws.close()


@pytest.mark.slow
def test_every_readme_command_and_code_block_runs(workspace):
    failures = walk(README, workspace)
    assert not failures, "\n\n".join(failures)


# -- the walk fails where the README is wrong -------------------------------------------


def test_the_readme_s_commands_are_all_run_or_listed():
    steps = readme_steps(README)
    words = [s.words for s in steps if s.kind == "command"]
    assert ["densbench", "list"] in words and ["densbench", "report", "results/default"] in words
    assert {s.kind for s in steps} == {"command", "script", "python"}
    assert all(how(s) is not None for s in steps)
    for prefix in NOT_RUN:  # no entry outlives the README command it is for
        assert any(w[:len(prefix)] == list(prefix) for w in words), prefix
    given = {w for ws in words for w in ws}
    assert set(GIVEN) <= given, set(GIVEN) - given


def test_a_command_neither_run_nor_listed_fails(tmp_path):
    doc = tmp_path / "README.md"
    doc.write_text("Set up:\n\n```bash\nconda install densbench\n```\n\nThen:\n\n"
                   "```ruby\nputs 1\n```\n")
    failures = walk(doc, None)
    assert len(failures) == 2
    assert "README.md:4: neither run nor listed" in failures[0] and "conda" in failures[0]
    assert "README.md:10: neither run nor listed" in failures[1] and "puts 1" in failures[1]


@pytest.mark.slow
def test_a_failing_command_or_block_fails(workspace):
    doc = workspace.cwd / "README.md"
    doc.write_text("```bash\ndensbench list\ndensbench lsit  # a typo\n```\n\n"
                   "```python\nimport densbench as db\ndb.data.load('no_such_set')\n```\n")
    failures = walk(doc, workspace)
    assert len(failures) == 2, failures
    assert "README.md:3: 'densbench lsit' (to_the_end): exit 2" in failures[0]
    assert "README.md:7:" in failures[1] and "no_such_set" in failures[1]


def test_a_fetch_command_runs_against_a_local_mirror(workspace):
    """The way a ``densbench fetch`` line will be run: the files land in the data root."""
    doc = workspace.cwd / "README.md"
    doc.write_text("```bash\ndensbench fetch mnist uci_power binarized_mnist --no-progress\n"
                   "densbench fetch cifar10 --data-root /data/densbench\n```\n")
    assert walk(doc, workspace) == []
    fetched = workspace.cwd.parent / "fetched"
    assert (fetched / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()
    assert (fetched / "uci_power" / "data.npy").read_bytes() == (
        workspace.data / "uci_power" / "data.npy").read_bytes()
