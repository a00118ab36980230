"""Sandbox backends for the loss worker: one module per backend, one registry.

A backend turns "run the worker on this submission file" into a process whose stdin and
stdout are the protocol pipes and whose stderr goes to the run's worker log. The trainer
talks to whatever it returns through :class:`harness.isolation.client.LossWorker` and never
imports the submission itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO

from harness.errors import UsageError

WORKER_SCRIPT = Path(__file__).resolve().parent.parent / "worker.py"
INSIDE_WORKER = "/sandbox/worker.py"  # where the real sandboxes mount the worker script, read-only
INSIDE_SUBMISSION = "/sandbox/submission.py"  # and the submission


def as_user_path(text: str, shown: Path, copy: Path | None = None) -> str:
    """``text`` (a worker's message or traceback) naming ``shown`` where it names the file inside
    the sandbox, or ``copy`` (the copy that ran: what ``--sandbox none`` runs and tracebacks name),
    whether by its absolute or its given path."""
    text = text.replace(INSIDE_SUBMISSION, str(shown))
    if copy is not None:
        for form in dict.fromkeys((str(Path(copy).resolve()), str(copy))):  # the longer, absolute one first
            text = text.replace(form, str(shown))
    return text


def site_paths() -> list[str]:
    """The package directories the worker's ``import torch`` may need, from this interpreter's
    ``sys.path`` (a virtual environment's, a ``--user`` install's, conda's ...). The worker runs
    with ``python -I`` (no user site, no PYTHONPATH), so they are passed to it explicitly."""
    import sys

    return [p for p in dict.fromkeys(sys.path)
            if p and Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def worker_argv(python: str, worker: str) -> list[str]:
    """The worker's command line: isolated mode, no bytecode, and the package directories."""
    args = [python, "-I", "-B", worker]
    for path in site_paths():
        args += ["--sys-path", path]
    return args


class Sandbox(ABC):
    """Launches the loss worker for one submission file."""

    name: str = ""
    #: What this backend does not protect against, shown to the user.
    warning: str | None = None
    #: How long the trainer busy-polls for a step reply before blocking (saves the wake-up
    #: latency of a blocking wait). 0 where replies are relayed by a thread of the trainer's own
    #: process, which a polling loop would starve of the GIL.
    reply_spin_s: float = 0.0005

    @classmethod
    def available(cls) -> bool:
        """Whether this backend can run on this host now (used by ``--sandbox auto``)."""
        return cls.problem() is None

    @classmethod
    def problem(cls) -> str | None:
        """Why this backend cannot run here (None: it can), for the user."""
        return None

    @abstractmethod
    def spawn(self, submission: Path, *, stderr: IO[bytes] | int) -> tuple[subprocess.Popen, str]:
        """Start the worker. Returns the process (stdin/stdout piped, stderr to ``stderr``,
        in its own session so it can be killed as a group) and the submission path as the
        worker sees it."""

    def kill(self, proc: subprocess.Popen) -> None:
        """Kill the worker and everything it started (default: its process group)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def release(self, proc: subprocess.Popen) -> None:  # noqa: B027  (optional hook)
        """Called after ``proc`` was killed: remove whatever else the backend created."""


_BACKENDS: dict[str, type[Sandbox]] = {}


def register_sandbox(cls: type[Sandbox]) -> type[Sandbox]:
    if cls.name in _BACKENDS:
        raise ValueError(f"sandbox {cls.name!r} is already registered")
    _BACKENDS[cls.name] = cls
    return cls


def available_sandboxes() -> list[str]:
    return sorted(_BACKENDS)


def get_sandbox(name: str) -> Sandbox:
    try:
        return _BACKENDS[name]()
    except KeyError:
        raise UsageError(f"unknown sandbox {name!r}; choose one of auto, {', '.join(available_sandboxes())}") from None


AUTO_ORDER = ("docker", "bwrap")
"""``--sandbox auto`` takes the first of these that is registered and available."""

NO_SANDBOX_HELP = (
    "install bubblewrap (apt-get install bubblewrap), or Docker plus the sandbox image "
    "(harness image build), or pass --sandbox none to run trusted code unsandboxed"
)


def resolve_sandbox(name: str, *, allow_fallback: bool) -> tuple[Sandbox, str | None]:
    """The backend for ``--sandbox NAME``; for ``auto`` the first available real one.

    With none available, ``auto`` falls back to ``none`` if ``allow_fallback`` (the
    demo profiles on synthetic data), returning a prominent warning as the second item;
    otherwise it raises :class:`UsageError` listing the options.
    """
    if name != "auto":
        sandbox = get_sandbox(name)
        if not sandbox.available():
            why = sandbox.problem()
            raise UsageError(f"the {name} sandbox is not available on this host"
                             + (f" ({why})" if why else "") + f"; {NO_SANDBOX_HELP}")
        return sandbox, sandbox.warning
    for candidate in AUTO_ORDER:
        cls = _BACKENDS.get(candidate)
        if cls is not None and cls.available():
            return cls(), None
    if not allow_fallback:
        raise UsageError(f"no sandbox is available for untrusted code: {NO_SANDBOX_HELP}")
    none = get_sandbox("none")
    return none, ("NO SANDBOX AVAILABLE: the submission runs as a plain process that can read your files "
                  f"and use the network (allowed for this demo profile only). To fix: {NO_SANDBOX_HELP}.")


from harness.isolation.sandbox import bwrap as _bwrap  # noqa: E402,F401  (registers the backends)
from harness.isolation.sandbox import docker as _docker  # noqa: E402,F401
from harness.isolation.sandbox import none as _none  # noqa: E402,F401
