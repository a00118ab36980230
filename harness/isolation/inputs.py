"""What ``MultiTaskLoss.forward`` asks for, read from the file's syntax tree (nothing is imported).

The harness passes an optional input (:data:`~harness.isolation.wire.CAPABILITIES`) to a
keyword-only parameter of that name, or, for a ``forward(..., **kwargs)`` as LibMTL and much public code
write it, through ``**kwargs`` when the code reads the input's name there as a literal string
(``kwargs.get("gramian")``, ``kwargs["step"]``, ``"gramian" in kwargs``, ``kwargs.pop(...)``,
``kwargs.setdefault(...)``): :func:`kwargs_inputs` lists those, and the trainer computes and sends them as
for a declared parameter. Any other use of ``**kwargs`` (a key that is not a literal, passing it on,
iterating it) and a key the harness never passes are problems the static check reports (exit 2 before
training), since the module would otherwise train silently without what it reads.

Warnings (the file runs, but probably not as meant): a known input's name as a positional parameter
(it never receives that input), and environment variables read with a default (the worker's environment
is empty, so the default applies).
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from pathlib import Path

from harness.isolation.rules import Problem
from harness.isolation.wire import CAPABILITIES

INTERFACE = ("fine_loss", "coarse_loss", "epoch", "total_epochs")
KEY_METHODS = ("get", "pop", "setdefault")  # kwargs.get("gramian"), ...: the first argument is the key
EXAMPLE = "def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian)"


def find_forward(tree: ast.Module) -> ast.FunctionDef | None:
    """``MultiTaskLoss.forward``'s definition: on the class, else on a base class defined in the file."""
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    todo, seen = ["MultiTaskLoss"], set()
    while todo:
        name = todo.pop(0)
        if name in seen or name not in classes:
            continue
        seen.add(name)
        for node in classes[name].body:
            if isinstance(node, ast.FunctionDef) and node.name == "forward":
                return node
        todo += [b.id for b in classes[name].bases if isinstance(b, ast.Name)]
    return None


@dataclass
class KwargsReads:
    """How ``forward`` uses its ``**kwargs`` parameter (``name``): the literal keys it reads (key -> first
    line) and the uses the check cannot see through (line, what)."""

    name: str | None = None
    keys: dict[str, int] = field(default_factory=dict)
    opaque: list[tuple[int, str]] = field(default_factory=list)


def kwargs_reads(forward: ast.FunctionDef) -> KwargsReads:
    """Every use of ``forward``'s ``**kwargs`` in its body (nested functions included, unless they
    rebind the name)."""
    if forward.args.kwarg is None:
        return KwargsReads()
    out = KwargsReads(forward.args.kwarg.arg)
    parent: dict[int, ast.AST] = {}
    todo: list[ast.AST] = list(forward.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and out.name in _bound(node.args):
            continue  # a nested function's own parameter of the same name
        for child in ast.iter_child_nodes(node):
            parent[id(child)] = node
            todo.append(child)
        if isinstance(node, ast.Name) and node.id == out.name and isinstance(node.ctx, ast.Load):
            key, how = _key_read(node, parent)
            if key is not None:
                out.keys.setdefault(key, node.lineno)
            else:
                out.opaque.append((node.lineno, how))
    out.opaque.sort()
    return out


def _bound(args: ast.arguments) -> set[str]:
    every = args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]
    return {a.arg for a in every}


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _key_read(node: ast.Name, parent: dict[int, ast.AST]) -> tuple[str | None, str]:
    """The literal key this use of the kwargs name reads, or None and how it is used instead."""
    up = parent.get(id(node))
    if isinstance(up, ast.Attribute) and up.attr in KEY_METHODS:
        call = parent.get(id(up))
        if isinstance(call, ast.Call) and call.func is up:
            key = _literal(call.args[0]) if call.args else None
            return key, f"reads {node.id}.{up.attr}(...) with a key that is not a literal string"
    if isinstance(up, ast.Subscript) and up.value is node:
        return _literal(up.slice), f"reads {node.id}[...] with a key that is not a literal string"
    if isinstance(up, ast.Compare) and up.comparators == [node] and isinstance(up.ops[0], (ast.In, ast.NotIn)):
        return _literal(up.left), f"tests `... in {node.id}` with a key that is not a literal string"
    if isinstance(up, ast.keyword) and up.arg is None:
        return None, f"passes **{node.id} on to another call"
    return None, f"uses {node.id} as a whole (iterates, copies or stores it)"


def input_problems(tree: ast.Module) -> list[Problem]:
    """Uses of ``forward``'s ``**kwargs`` that would leave the module without an input it reads."""
    forward = find_forward(tree)
    reads = kwargs_reads(forward) if forward is not None else KwargsReads()
    name, problems = reads.name, []
    available = ", ".join(CAPABILITIES)
    for line, how in reads.opaque:
        problems.append(
            Problem(
                line,
                f"forward {how}: the harness passes an optional input through **{name} only where the code reads "
                f"its name as a literal string ({name}.get('gramian'), {name}['step'], 'gramian' in {name}); "
                f"declare the inputs it needs as keyword-only parameters instead: {EXAMPLE} (available: {available})",
            )
        )
    for key, line in reads.keys.items():
        if key not in CAPABILITIES:
            close = difflib.get_close_matches(key, list(CAPABILITIES), n=1)
            problems.append(
                Problem(
                    line,
                    f"forward reads {key!r} from **{name}, which the harness never passes"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                    + f"; it passes only: {available}. A setting belongs in the file itself (MultiTaskLoss "
                    "is built with no arguments)",
                )
            )
    return problems


def kwargs_inputs(path: Path) -> list[str]:
    """The optional inputs the file's ``forward`` reads from ``**kwargs`` (empty when it has none, or the
    file cannot be read or parsed: the static check reports that)."""
    try:
        forward = find_forward(ast.parse(Path(path).read_bytes()))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    keys = kwargs_reads(forward).keys if forward is not None else {}
    return [k for k in keys if k in CAPABILITIES]


def input_warnings(tree: ast.Module) -> list[str]:
    """Inputs ``forward`` seems to want but will never be given: a known input's name as a positional
    parameter, in one of the four interface positions (it receives that argument) or after them (it
    keeps its default); and environment variables read with a default (:func:`environment_reads`)."""
    forward = find_forward(tree)
    out = []
    args = forward.args.posonlyargs + forward.args.args if forward is not None else []
    for i, a in enumerate(args[1:]):  # after self
        if a.arg in CAPABILITIES and i < len(INTERFACE):
            out.append(
                f"forward's parameter `{a.arg}` is in position {i + 1}, which receives {INTERFACE[i]}, not "
                f"the {a.arg}: keep the four positional parameters (fine_loss, coarse_loss, epoch, "
                f"total_epochs) and add `*, {a.arg}` after them"
            )
        elif a.arg in CAPABILITIES:
            out.append(
                f"forward's parameter `{a.arg}` is positional, so the harness never passes it (it keeps its "
                f"default): make it keyword-only, after a `*`: def forward(self, fine_loss, coarse_loss, "
                f"epoch, total_epochs, *, {a.arg})"
            )
    variables = environment_reads(tree)
    if variables:
        names = ", ".join(variables)
        out.append(
            f"the file reads the environment variable{'s' * (len(variables) > 1)} {names}: the loss worker's "
            "environment is empty, so the defaults in the file apply (to change a setting, change it in the file: "
            "the file is the entry's version)"
        )
    return out


def environment_reads(tree: ast.Module) -> list[str]:
    """The environment variables the file reads by literal name (``os.environ.get("X", ...)``,
    ``os.getenv("X")``, ``"X" in os.environ``), in order."""
    environ, getenv = set(), set()  # the local names of os.environ and os.getenv ("os.environ" for attributes)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "os":
                    environ.add(f"{a.asname or 'os'}.environ")
                    getenv.add(f"{a.asname or 'os'}.getenv")
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and not node.level:
            for a in node.names:
                {"environ": environ, "getenv": getenv}.get(a.name, set()).add(a.asname or a.name)
    found: dict[str, None] = {}
    for node in ast.walk(tree):
        target = key = None
        if isinstance(node, ast.Call) and node.args:
            target, key = _dotted(node.func), _literal(node.args[0])
            if target not in getenv and not (
                isinstance(node.func, ast.Attribute) and node.func.attr == "get" and _dotted(node.func.value) in environ
            ):
                key = None
        elif isinstance(node, ast.Compare) and isinstance(node.ops[0], (ast.In, ast.NotIn)):
            key = _literal(node.left) if _dotted(node.comparators[0]) in environ else None
        if key is not None:
            found[key] = None
    return list(found)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None
