"""The package's structure, checked from its source: no import cycle among its modules,
no module over the size a reader can hold, and every module says what it owns."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"
# "no module over ~400 lines" of the dense style the package had; counted on the ruff-formatted source
# (a call that does not fit in 120 columns gets a line per argument), that is about 500
MAX_LINES = 500
# a package that imports its own backends to register them is the one allowed cycle
REGISTERING = {"harness.isolation.sandbox"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (function bodies included),
    resolved to the longest module name that exists."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + [node.module])
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    # a registering package's edges to its own backends are its registry, not a dependency
    for package in REGISTERING:
        graph[package] = {m for m in graph[package] if not m.startswith(package + ".")}
    assert graph["harness.evaluate.run"], "the checker must see imports"
    assert _cycles(graph) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size_and_docstring(name):
    path = MODULES[name]
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_LINES, f"{name} has {len(source.splitlines())} lines"
    if name != "harness":
        assert ast.get_docstring(ast.parse(source)), f"{name} does not say what it owns"


def test_the_trusted_side_never_imports_the_worker():
    """The sandboxed script is run, never imported: the trainer speaks the wire format through
    ``harness.isolation.wire``, the file staged beside the worker."""
    worker = "harness.isolation.worker"
    assert [name for name, path in MODULES.items() if worker in _imports(name, path)] == []
    assert _imports(worker, MODULES[worker]) <= {"harness.isolation", "harness.isolation.wire"}  # for the type checker


def test_the_paths_a_module_derives_from_its_own_file_name_the_checkout():
    """Modules that find the checkout from ``__file__`` (and so break when they move to another
    package depth) name the files they mean."""
    from harness.evaluate.names import SOURCE_BASELINES
    from harness.tools.image import DOCKERFILE
    from harness.tools.selftest import SOURCE
    from harness.training.models import default_hidden_dir
    from harness.util.provenance import SOURCE_DIR

    checkout = PACKAGE.parent
    assert SOURCE_DIR == SOURCE == checkout and (checkout / "pyproject.toml").is_file()
    assert SOURCE_BASELINES == checkout / "baselines" and (SOURCE_BASELINES / "equal_weighting.py").is_file()
    assert DOCKERFILE == checkout / "Dockerfile" and DOCKERFILE.is_file()
    assert default_hidden_dir() == checkout / "hidden" and default_hidden_dir().is_dir()
