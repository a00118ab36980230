"""The static check: rules applied to a submission's syntax tree before anything imports it.

It is hygiene, not the defense: it gives a submitter fast, line-numbered feedback and turns
away the obvious attacks early, while the sandbox is what actually contains the code. It refuses
what can harm or cannot work in the sandbox (processes, sockets, files, native code, the trainer's
internals) and lets a researcher's harmless habits through; every refusal says what to do instead.
Every problem found is reported (not only the first), each with its line.

Rules (documented for submitters in ``submissions/README.md``):

1. Imports come from :data:`ALLOWED_MODULES`; ``from M import name`` may not import a
   forbidden or private name. On some allowed modules only part is allowed (:data:`MODULE_PARTS`:
   ``os.environ`` and ``os.getenv``; scipy's numerical parts, not its file readers; ``logging``
   without file handlers). An optional tool (:data:`~harness.isolation.wire.OPTIONAL_TOOLS`: wandb,
   tensorboard, tqdm, ...) may be imported inside ``try: ... except ImportError:``; the worker makes
   that import fail, so the fallback runs. Other refused imports name the alternative
   (:data:`ALTERNATIVES`).
2. The builtins in :data:`FORBIDDEN_CALLS` may not be used at all; ``getattr``/``setattr``/
   ``hasattr``/``delattr`` only with a literal attribute name that is not private.
3. No dunder names or attributes (``__builtins__``, ``__class__``, ``__globals__``, ...),
   except ``__init__`` (``super().__init__()``) and ``__name__``.
4. No attribute in :data:`FORBIDDEN_ATTRIBUTES` anywhere (``.os``, ``.sys``, ``._getframe``,
   ``.grad_fn``, ...), and on torch no private attribute and none of :data:`FORBIDDEN_TORCH`
   (``torch.load``, ``torch.hub``, ``torch.cuda``, ...), except the seed, device-count and cuDNN
   settings of :data:`ALLOWED_TORCH_PATHS` (no-ops where the loss runs).
5. No assignment to or deletion of an attribute of an imported module (monkeypatching), except the
   settings of :data:`TORCH_SETTINGS` (``torch.backends.cudnn.deterministic = True``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from harness.isolation.wire import OPTIONAL_TOOLS

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
        # habits that are harmless in the worker: logging and warnings go to the run's worker.log,
        # os.environ reads find an empty environment (MODULE_PARTS), scipy's numerical parts
        "logging",
        "warnings",
        "time",
        "os",
        "scipy",
        "scipy.optimize",
        "scipy.linalg",
        "scipy.special",
    }
)
SCIPY_PARTS = ("optimize", "linalg", "special")
OS_HINT = "only os.environ and os.getenv are available (the loss worker's environment is empty, so defaults apply)"
SCIPY_HINT = "scipy's numerical parts are available (scipy.optimize, scipy.linalg, scipy.special), not its file readers"
FILES_HINT = (
    "a loss module reads and writes no files: keep state on self (it lasts the whole run), record numbers with "
    "scalars() (submissions/README.md), and print(): its output goes to the run's worker.log"
)
LOGGING_HINT = "logging output goes to the run's worker.log: logging.basicConfig(level=logging.INFO) is all it takes"
TRACKER_HINT = (
    "record numbers with a scalars() method instead (they land in the run's steps.jsonl and the HTML report plots "
    "them per step; submissions/README.md), or keep the import optional: inside `try:`, with `except ImportError:` "
    "and a fallback (`wandb = None`, `SummaryWriter = None`): it always fails where the loss runs, and the fallback "
    "runs"
)
ALTERNATIVES = {
    **dict.fromkeys(("sys", "io", "traceback"), "print() needs no sys: what it prints goes to the run's worker.log"),
    **dict.fromkeys(
        ("subprocess", "multiprocessing", "threading", "concurrent", "asyncio", "signal", "sched"),
        "a loss module runs as one process with one thread: compute what you need in forward",
    ),
    **dict.fromkeys(("socket", "ssl", "http", "urllib", "requests", "ftplib", "smtplib"), "the sandbox has no network"),
    **dict.fromkeys(
        ("pathlib", "shutil", "tempfile", "glob", "pickle", "shelve", "marshal", "json", "csv", "h5py", "fileinput"),
        FILES_HINT,
    ),
    **dict.fromkeys(
        ("ctypes", "cffi", "importlib", "builtins", "gc", "inspect", "resource", "mmap", "dis", "code"),
        "a loss module sees only its inputs: native code, imports at run time and the process's internals stay outside",
    ),
    **dict.fromkeys(sorted(OPTIONAL_TOOLS), TRACKER_HINT),
    "tqdm": "a loss module has no loop to show progress of: remove it, or keep the import optional (`try: from tqdm "
    "import tqdm` / `except ImportError: tqdm = None`: it always fails where the loss runs)",
    "scipy": SCIPY_HINT,
    "os": OS_HINT,
    "logging": LOGGING_HINT,
    **dict.fromkeys(("matplotlib", "seaborn", "plotly"), "record numbers with scalars(): the HTML report plots them"),
    **dict.fromkeys(("pandas", "sklearn"), "use numpy or torch"),
}
"""What to do instead, by the refused module's top-level name (or its full name: torch.utils.tensorboard)."""
MODULE_PARTS: dict[str, tuple[frozenset[str] | None, frozenset[str], str]] = {
    "os": (frozenset({"environ", "getenv"}), frozenset(), OS_HINT),
    "scipy": (frozenset(SCIPY_PARTS), frozenset(), SCIPY_HINT),
    "logging": (None, frozenset({"FileHandler", "WatchedFileHandler", "handlers", "config"}), LOGGING_HINT),
}
"""On these modules: the attributes allowed (None: all but private ones), those refused, and why."""
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
TORCH_SETTINGS = frozenset(
    {
        "torch.backends.cudnn.deterministic",
        "torch.backends.cudnn.benchmark",
        "torch.backends.cudnn.enabled",
        "torch.backends.cudnn.allow_tf32",
        "torch.backends.cuda.matmul.allow_tf32",
    }
)
"""cuDNN and TF32 switches of a seeding routine: they may be read and set (nothing in the loss worker uses them)."""
ALLOWED_TORCH_PATHS = TORCH_SETTINGS | {
    "torch.cuda.is_available",  # False in every sandbox: the usual device guard
    "torch.cuda.device_count",  # 0 there
    "torch.cuda.manual_seed",  # no-ops without a GPU
    "torch.cuda.manual_seed_all",
}
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
        self._guarded = 0  # inside the body of a ``try`` that catches ImportError

    def report(self, node: ast.AST, message: str) -> None:
        self.problems.append(Problem(getattr(node, "lineno", 0), message))

    # -- imports
    def visit_Try(self, node: ast.Try) -> None:  # and ast.TryStar (Python 3.11), of the same shape
        guards = any(_catches_import_error(h.type) for h in node.handlers)
        self._guarded += guards
        for statement in node.body:
            self.visit(statement)
        self._guarded -= guards
        for part in [*node.handlers, *node.orelse, *node.finalbody]:
            self.visit(part)

    visit_TryStar = visit_Try

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                if not (self._guarded and _optional_tool(alias.name)):  # a guarded tool fails; the fallback runs
                    self.report(node, f"import of {alias.name!r} is not allowed: {_alternative(alias.name)}")
            elif alias.asname:
                self.modules[alias.asname] = alias.name
            else:
                self.modules[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.report(node, f"import from {'.' * node.level + module!r} is not allowed (the file is imported alone)")
            return
        if module not in ALLOWED_MODULES:
            tool = _optional_tool(module) or all(_optional_tool(f"{module}.{a.name}") for a in node.names)
            if not (self._guarded and tool):
                self.report(node, f"import from {module!r} is not allowed: {_alternative(module)}")
            return
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if alias.name == "*":
                self.report(node, f"`from {module} import *` is not allowed; import the names you use")
            elif module in MODULE_PARTS and _refused_part(module, alias.name):
                self.report(node, f"importing {full!r} is not allowed: {MODULE_PARTS[module][2]}")
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
        if self._module_path(node.func) == "logging.basicConfig" and {"filename", "filemode"} & {
            k.arg for k in node.keywords
        }:
            self.report(node, f"logging to a file is not allowed: {LOGGING_HINT}")
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Load) and self._module_path(node.value) == "os.environ":
            self.report(
                node,
                "os.environ[...] raises KeyError in the loss worker, whose environment is empty: read it with a "
                "default, os.environ.get('NAME', default)",
            )
        self.generic_visit(node)

    # -- attributes
    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        path = self._module_path(node.value)
        full = None if path is None else f"{path}.{attr}"
        if _is_dunder(attr) and attr not in ALLOWED_DUNDERS:
            self.report(node, f"the attribute {attr!r} is not allowed (no dunder attributes)")
        elif full in ALLOWED_TORCH_PATHS:
            inner = node.value  # torch.cuda in torch.cuda.is_available: only as the allowed path's owner
            while isinstance(inner, ast.Attribute):
                self._allowed.add(id(inner))
                inner = inner.value
        elif id(node) in self._allowed:
            pass
        elif path in MODULE_PARTS and _refused_part(path, attr):
            self.report(node, f"{full} is not allowed: {MODULE_PARTS[path][2]}")
        elif attr in FORBIDDEN_ATTRIBUTES:
            self.report(node, f"the attribute {attr!r} is not allowed")
        elif path is not None:
            if path.split(".")[0] == "numpy" and (attr in FORBIDDEN_NUMPY or attr.startswith("_")):
                self.report(node, f"{full} is not allowed (files and native code stay outside)")
            if path.split(".")[0] in ("torch", "scipy") and attr.startswith("_") and attr not in ALLOWED_DUNDERS:
                self.report(node, f"private {path.split('.')[0]} attribute {full} is not allowed")
            elif path.split(".")[0] == "torch" and attr in FORBIDDEN_TORCH:
                hint = " (the loss runs on the CPU)" if attr in ("cuda", "mps", "xpu") else ""
                self.report(node, f"{full} is not allowed{hint}")
        if isinstance(node.ctx, (ast.Store, ast.Del)) and path is not None and full not in TORCH_SETTINGS:
            self.report(node, f"modifying the module {path!r} is not allowed")
        self.generic_visit(node)

    def _module_path(self, node: ast.AST) -> str | None:
        """The dotted path if ``node`` is an imported module or an attribute chain on one."""
        if isinstance(node, ast.Name):
            return self.modules.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._module_path(node.value)
            return f"{base}.{node.attr}" if base is not None else None
        return None


def _catches_import_error(kind: ast.expr | None) -> bool:
    """Whether an ``except`` clause of this type catches ImportError (bare, Exception, a tuple with it)."""
    if kind is None:
        return True
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    return any(
        isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError", "Exception", "BaseException")
        for n in names
    )


def _optional_tool(module: str) -> bool:
    return any(module == t or module.startswith(t + ".") for t in OPTIONAL_TOOLS)


def _alternative(module: str) -> str:
    """What to do instead of importing ``module`` (its most specific entry in ALTERNATIVES)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        hint = ALTERNATIVES.get(".".join(parts[:n]))
        if hint is not None:
            return hint.format(name=".".join(parts[:n]))
    return "it is not available to a loss module"


def _refused_part(module: str, attr: str) -> bool:
    allowed, refused, _ = MODULE_PARTS[module]
    return attr.startswith("_") or attr in refused or (allowed is not None and attr not in allowed)


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def allowed_imports() -> str:
    return ", ".join(sorted(m for m in ALLOWED_MODULES if m != "__future__"))


def find_problems(tree: ast.Module) -> list[Problem]:
    """Every rule violation in ``tree``, sorted by line."""
    visitor = _Visitor()
    visitor.visit(tree)
    return sorted(visitor.problems, key=lambda p: p.line)
