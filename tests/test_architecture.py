"""The package's shape: no import cycle between its modules, no module over 600 lines and
no function over 60.

The import graph is read from the source (every ``import`` and ``from ... import``,
those inside functions included, since a deferred import still ties the two modules
together), never by importing anything, so the check is quick and sees every module.
A package's ``__init__`` is a module of its own: ``from pkg import name`` is an edge to
``pkg`` unless ``name`` is a submodule, then to ``pkg.name`` (as grimp and import-linter
read it).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import networkx as nx  # a dependency of PyTorch, hence always installed with densbench
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "densbench"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


@functools.cache
def _parsed(path: Path) -> ast.Module:
    """A file's syntax tree, read once for all the checks."""
    return ast.parse(path.read_text(), filename=str(path))


def _modules(root: Path) -> dict[str, Path]:
    """Every module under ``root`` by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
              known: dict[str, Path]) -> list[str]:
    """The package's own modules one import statement names."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            # a relative import counts from the package the module is in (itself for an
            # __init__)
            anchor = module.split(".")
            anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
            base = ".".join(anchor + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                 for alias in node.names]
    # ``import a.b.c`` names a.b.c; keep the longest prefix that is one of ours
    out = []
    for name in names:
        parts = name.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        if parts:
            out.append(".".join(parts))
    return out


def import_graph(root: Path = PACKAGE) -> nx.DiGraph:
    """Module -> module, for every import between the package's own modules."""
    known = _modules(root)
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for module, path in known.items():
        for node in ast.walk(_parsed(path)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _imported(node, module, path.name == "__init__.py", known):
                    if target != module:
                        graph.add_edge(module, target)
    return graph


def long_functions(root: Path = PACKAGE,
                   limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (n lines)`` of every function or method longer than ``limit``
    lines, its decorators and docstring included."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(_parsed(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = node.end_lineno - start + 1
                if n > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} "
                                 f"{node.name} ({n} lines)")
    return found


def test_no_import_cycle():
    # one cycle shown per tangle (strongly connected set of modules): listing every
    # simple cycle can take exponential time in a badly tangled graph
    graph = import_graph()
    tangles = [graph.subgraph(group) for group in nx.strongly_connected_components(graph)
               if len(group) > 1]
    cycles = [" -> ".join([a for a, _ in nx.find_cycle(t)] + [nx.find_cycle(t)[0][0]])
              for t in tangles]
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


def test_no_module_over_600_lines():
    long = [f"{path.relative_to(PACKAGE.parent)} ({n} lines)"
            for path in sorted(PACKAGE.rglob("*.py"))
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_60_lines():
    long = long_functions()
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


@pytest.mark.parametrize(("files", "cycle"), [
    ({"__init__.py": "from pkg import a\n", "a.py": "def f():\n    from pkg import b\n",
      "b.py": "from . import a\n"}, True),
    ({"__init__.py": "", "a.py": "from pkg.b import x\n", "b.py": "import os\n"}, False),
    ({"__init__.py": "from pkg.sub import thing\n", "sub/__init__.py": "",
      "sub/m.py": "import pkg\n"}, False),
    ({"__init__.py": "from pkg.sub import m\n", "sub/__init__.py": "",
      "sub/m.py": "from .. import x\n"}, True),
])
def test_the_graph_sees_deferred_and_relative_imports(tmp_path, files, cycle):
    """The reader itself: an import inside a function and a relative import are edges;
    ``from pkg.sub import thing`` reaches ``pkg.sub``, ``from pkg.sub import m`` the
    submodule ``pkg.sub.m``."""
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    graph = import_graph(tmp_path / "pkg")
    assert bool(list(nx.simple_cycles(graph))) is cycle
