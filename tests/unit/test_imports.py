"""The package's import structure: every module imports on its own, and no two modules import each other.

Rule for cycles: a module depends on every ``lightning_gan`` module it imports anywhere in its source, at
module level, in a class body or inside a function (a deferred import only postpones a cycle, it does not
remove it), except imports under ``if TYPE_CHECKING:``, which never run. ``from lightning_gan.a import b``
depends on ``lightning_gan.a.b`` when that is a module, else on ``lightning_gan.a``; importing a submodule
does not count as depending on its parent packages (a package ``__init__`` re-exporting its submodules is not
a cycle). Any strongly connected set of two or more modules in that graph is a cycle, reported as a path.

Importing alone: one fresh interpreter imports each module in turn after removing every ``lightning_gan``
module from ``sys.modules``, so each import starts from nothing of ours (third-party packages stay loaded,
which keeps the whole check to seconds).
"""

from __future__ import annotations

import ast
import json
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import lightning_gan
from conftest import run_process  # tests/conftest.py

PACKAGE_ROOT = Path(lightning_gan.__file__).parent


def module_files(package_root: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` file of the package (``__init__`` is the package)."""
    files = {}
    for path in sorted(package_root.rglob("*.py")):
        parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The modules among ``known`` that module ``name`` (source ``path``) imports, by the rule in the docstring."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    visit_one(stmt)
            else:
                visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                found.add(submodule if submodule in known else module)
        else:
            visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return {m for m in found if m in known and m != name}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected set of two or more modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_through(component, graph) for component in components]


def _cycle_through(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle from the component's first module back to itself, inside the component (BFS)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]  # start, ..., v, start
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in strongly connected {sorted(component)}")  # cannot happen


def package_graph(package_root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    files = module_files(package_root)
    return {name: imported_modules(name, path, files) for name, path in files.items()}


def test_no_import_cycle_in_the_package() -> None:
    cycles = import_cycles(package_graph(PACKAGE_ROOT))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_sees_deferred_imports_and_skips_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "from pkg.a import A\n",                      # re-export: no cycle with pkg.a
        "a.py": "from . import b\nA = 1\n",                          # a -> b
        "b.py": "def f():\n    from pkg.sub import c\n",             # b -> sub.c (deferred)
        "sub/__init__.py": "",
        "sub/c.py": "from ..a import A\n",                           # c -> a: a -> b -> c -> a
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.e import E\nelse:\n    E = 0\n",
        "e.py": "import pkg.d\nclass E:\n    import pkg.sub\n",      # e -> d, e -> sub; d -> e only for typing
    }
    for rel, text in sources.items():
        (pkg / rel).write_text(text)
    graph = package_graph(pkg)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.sub.c"}, "pkg.sub": set(),
                     "pkg.sub.c": {"pkg.a"}, "pkg.d": set(), "pkg.e": {"pkg.d", "pkg.sub"}}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    assert import_cycles({"x": {"y"}, "y": {"x", "z"}, "z": set()}) == [["x", "y", "x"]]


_IMPORT_EACH_ALONE = textwrap.dedent("""
    import importlib, json, sys, traceback
    failures = {}
    for name in json.loads(sys.argv[1]):
        for loaded in [m for m in sys.modules if m == "lightning_gan" or m.startswith("lightning_gan.")]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except BaseException as exc:  # report every module, not just the first failure
            failures[name] = traceback.format_exception_only(type(exc), exc)[-1].strip()
    print(json.dumps(failures))
""")


def test_every_module_imports_alone() -> None:
    names = sorted(module_files(PACKAGE_ROOT))
    assert "lightning_gan.cli" in names and "lightning_gan.metrics.base" in names
    done = run_process([sys.executable, "-c", _IMPORT_EACH_ALONE, json.dumps(names)], capture_output=True,
                       text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert not failures, "\n".join(f"import {name}: {error}" for name, error in failures.items())
