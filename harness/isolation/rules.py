"""The static check: rules applied to a submission's syntax tree before anything imports it.

It is hygiene, not the defense: it gives a submitter fast, line-numbered feedback and turns
away the obvious attacks early, while the sandbox is what actually contains the code.
Every problem found is reported (not only the first), each with its line.

Rules (documented for submitters in ``submissions/README.md``):

1. Imports come from :data:`ALLOWED_MODULES`; ``from M import name`` may not import a
   forbidden or private name.
2. The builtins in :data:`FORBIDDEN_CALLS` may not be used at all; ``getattr``/``setattr``/
   ``hasattr``/``delattr`` only with a literal attribute name that is not private.
3. No dunder names or attributes (``__builtins__``, ``__class__``, ``__globals__``, ...),
   except ``__init__`` (``super().__init__()``) and ``__name__``.
4. No attribute in :data:`FORBIDDEN_ATTRIBUTES` anywhere (``.os``, ``.sys``, ``._getframe``,
   ``.grad_fn``, ...), and on torch no private attribute and none of :data:`FORBIDDEN_TORCH`
   (``torch.load``, ``torch.hub``, ``torch.cuda``, ...).
5. No assignment to or deletion of an attribute of an imported module (monkeypatching).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

ALLOWED_MODULES = frozenset(
    {
        "torch",
        "torch.nn",
        "torch.nn.functional",
        "torch.nn.init",
        "torch.linalg",
        "torch.special",
        "torch.distributions",
        "torch.autograd",
        "math",
        "random",
        "statistics",
        "numbers",
        "typing",
        "collections",
        "dataclasses",
        "functools",
        "itertools",
        "abc",
        "enum",
        "copy",
        "numpy",
        "__future__",
    }
)
FORBIDDEN_CALLS = frozenset(
    {
        "eval",
        "exec",
        "compile",
        "__import__",
        "open",
        "breakpoint",
        "input",
        "globals",
        "locals",
        "vars",
        "memoryview",
        "exit",
        "quit",
        "help",
    }
)
ATTRIBUTE_BUILTINS = frozenset({"getattr", "setattr", "hasattr", "delattr"})
ALLOWED_DUNDERS = frozenset({"__init__", "__name__"})
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "os",
        "sys",
        "subprocess",
        "builtins",
        "importlib",
        "ctypes",
        "socket",
        "shutil",
        "pathlib",
        "io",
        "pickle",
        "marshal",
        "gc",
        "inspect",
        "signal",
        "threading",
        "multiprocessing",
        "resource",
        "_getframe",
        "f_globals",
        "f_locals",
        "f_back",
        "f_code",
        "f_builtins",
        "gi_frame",
        "cr_frame",
        "tb_frame",
        "co_code",
        "grad_fn",
        "next_functions",
        "_saved_tensors",
        "register_hook",
        "tofile",
    }
)
# numpy's ways out of the module's own world: files, memory maps and native code
FORBIDDEN_NUMPY = frozenset(
    {
        "load",
        "save",
        "savez",
        "savez_compressed",
        "fromfile",
        "memmap",
        "loadtxt",
        "savetxt",
        "genfromtxt",
        "fromregex",
        "ctypeslib",
        "lib",
        "f2py",
        "distutils",
        "testing",
        "DataSource",
        "core",
        "_core",
    }
)
ALLOWED_TORCH_PATHS = frozenset({"torch.cuda.is_available"})  # False in every sandbox: the usual device guard
FORBIDDEN_TORCH = frozenset(
    {
        "load",
        "save",
        "hub",
        "utils",
        "ops",
        "classes",
        "library",
        "serialization",
        "backends",
        "cuda",
        "jit",
        "compile",
        "multiprocessing",
        "distributed",
        "package",
        "onnx",
        "export",
        "fx",
        "testing",
        "overrides",
        "compiler",
        "set_default_device",
        "set_num_threads",
        "from_file",
        "mps",
        "xpu",
        "cpu",
    }
)


@dataclass(frozen=True)
class Problem:
    line: int
    message: str


class _Visitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.modules: dict[str, str] = {}  # local name -> module path it is bound to
        self._called: set[int] = set()  # ids of the nodes that are called (``f`` in ``f(...)``)
        self._allowed: set[int] = set()  # ids of attribute nodes inside an allowed path (torch.cuda.is_available)

    def report(self, node: ast.AST, message: str) -> None:
        self.problems.append(Problem(getattr(node, "lineno", 0), message))

    # -- imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                self.report(node, f"import of {alias.name!r} is not allowed")
            elif alias.asname:
                self.modules[alias.asname] = alias.name
            else:
                self.modules[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or module not in ALLOWED_MODULES:
            self.report(node, f"import from {'.' * node.level + module!r} is not allowed")
            return
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if alias.name == "*":
                self.report(node, f"`from {module} import *` is not allowed; import the names you use")
            elif (
                alias.name.startswith("_")
                or alias.name in FORBIDDEN_ATTRIBUTES
                or (module == "torch" and alias.name in FORBIDDEN_TORCH)
            ):
                self.report(node, f"importing {full!r} is not allowed")
            elif full in ALLOWED_MODULES or module != "__future__":
                self.modules[alias.asname or alias.name] = full

    # -- names and calls
    def visit_Name(self, node: ast.Name) -> None:
        if _is_dunder(node.id) and node.id not in ALLOWED_DUNDERS:
            self.report(node, f"the name {node.id!r} is not allowed (no dunder names)")
        elif node.id in FORBIDDEN_CALLS and node.id not in self.modules:
            self.report(node, f"`{node.id}` is not allowed in a submission")
        elif node.id in ATTRIBUTE_BUILTINS and id(node) not in self._called:
            # as a value (``G = getattr``, ``map(getattr, ...)``) it escapes the literal-name rule
            self.report(node, f"`{node.id}` may only be called directly, with a literal attribute name")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self._called.add(id(node.func))
        if isinstance(node.func, ast.Name) and node.func.id in ATTRIBUTE_BUILTINS:
            attr = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str) and not attr.value.startswith("_")):
                self.report(node, f"`{node.func.id}` needs a literal, non-private attribute name")
        self.generic_visit(node)

    # -- attributes
    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if _is_dunder(attr) and attr not in ALLOWED_DUNDERS:
            self.report(node, f"the attribute {attr!r} is not allowed (no dunder attributes)")
        elif attr in FORBIDDEN_ATTRIBUTES:
            self.report(node, f"the attribute {attr!r} is not allowed")
        elif self._module_path(node) in ALLOWED_TORCH_PATHS:
            self._allowed.add(id(node.value))  # torch.cuda here only as the guard's owner
        elif id(node) in self._allowed:
            pass
        else:
            path = self._module_path(node.value)
            if path is not None and path.split(".")[0] == "numpy" and (attr in FORBIDDEN_NUMPY or attr.startswith("_")):
                self.report(node, f"{path}.{attr} is not allowed (files and native code stay outside)")
            if path is not None and path.split(".")[0] == "torch":
                if attr.startswith("_") and attr not in ALLOWED_DUNDERS:
                    self.report(node, f"private torch attribute {path}.{attr} is not allowed")
                elif attr in FORBIDDEN_TORCH:
                    hint = " (the loss runs on the CPU)" if attr in ("cuda", "mps", "xpu") else ""
                    self.report(node, f"{path}.{attr} is not allowed{hint}")
        if isinstance(node.ctx, (ast.Store, ast.Del)) and self._module_path(node.value) is not None:
            self.report(node, f"modifying the module {self._module_path(node.value)!r} is not allowed")
        self.generic_visit(node)

    def _module_path(self, node: ast.AST) -> str | None:
        """The dotted path if ``node`` is an imported module or an attribute chain on one."""
        if isinstance(node, ast.Name):
            return self.modules.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._module_path(node.value)
            return f"{base}.{node.attr}" if base is not None else None
        return None


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def allowed_imports() -> str:
    return ", ".join(sorted(m for m in ALLOWED_MODULES if m != "__future__"))


def find_problems(tree: ast.Module) -> list[Problem]:
    """Every rule violation in ``tree``, sorted by line."""
    visitor = _Visitor()
    visitor.visit(tree)
    return sorted(visitor.problems, key=lambda p: p.line)
