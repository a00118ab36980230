"""Sandbox backends for the loss worker: one module per backend, one registry.

A backend turns "run the worker on this submission file" into a process whose stdin and
stdout are the protocol pipes and whose stderr goes to the run's worker log. The trainer
talks to whatever it returns through :class:`harness.worker_client.LossWorker` and never
imports the submission itself.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO

from harness.errors import UsageError

WORKER_SCRIPT = Path(__file__).resolve().parent.parent / "worker.py"


class Sandbox(ABC):
    """Launches the loss worker for one submission file."""

    name: str = ""
    #: What this backend does not protect against, shown to the user.
    warning: str | None = None

    @abstractmethod
    def spawn(self, submission: Path, *, stderr: IO[bytes]) -> tuple[subprocess.Popen, str]:
        """Start the worker. Returns the process (stdin/stdout piped, in its own session
        so it can be killed as a group) and the submission path as the worker sees it."""


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
        raise UsageError(f"unknown sandbox {name!r}; choose one of {', '.join(available_sandboxes())}") from None


from harness.sandbox import none as _none  # noqa: E402,F401  (registers the backend)
