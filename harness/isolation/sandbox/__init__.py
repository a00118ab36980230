"""Sandbox backends for the loss worker: one module per backend, one registry.

A backend turns "run the worker on this submission file" into a :class:`WorkerProcess`: the
protocol's two directions (``stdin``, ``stdout``) and everything the worker prints (``stderr``, for
the run's worker log). The trainer talks to it through :class:`harness.isolation.client.LossWorker`
and never imports the submission itself. A backend that cannot run on this host says why in
:meth:`Sandbox.problem`.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol, cast, final

from harness.errors import UsageError

WORKER_SCRIPT = Path(__file__).resolve().parent.parent / "worker.py"
WIRE_MODULE = WORKER_SCRIPT.with_name("wire.py")  # the wire format, which the worker loads from beside itself
INSIDE_WORKER = "/sandbox/worker.py"  # where the real sandboxes mount the worker script, read-only
INSIDE_WIRE = "/sandbox/wire.py"  # and the wire format, beside it
INSIDE_SUBMISSION = "/sandbox/submission.py"  # and the submission


STAGED_PREFIX = "harness-w-"  # the directories of stage()


def site_paths() -> list[str]:
    """The package directories the worker's ``import torch`` may need, from this interpreter's
    ``sys.path`` (a virtual environment's, a ``--user`` install's, conda's ...). The worker runs
    with ``python -I`` (no user site, no PYTHONPATH), so they are passed to it explicitly."""
    import sys

    return [
        p
        for p in dict.fromkeys(sys.path)
        if p and Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()
    ]


def worker_argv(python: str, worker: str, sys_path: list[str] | None = None, *, no_site: bool = False) -> list[str]:
    """The worker's command line: isolated mode, no bytecode, and the package directories (``sys_path``,
    default :func:`site_paths`). ``no_site``: without the ``site`` module too (``-S``), so that the
    worker's path is exactly the interpreter's standard library and ``sys_path``."""
    args = [python, "-I", "-S", "-B", worker] if no_site else [python, "-I", "-B", worker]
    for path in site_paths() if sys_path is None else sys_path:
        args += ["--sys-path", path]
    return args


class RequestChannel(Protocol):
    """The worker's input (requests go this way)."""

    def fileno(self) -> int: ...

    def write_nowait(self, data: memoryview, /) -> int:
        """Write what fits now and return how many bytes that was; ``BlockingIOError`` when
        nothing fits (wait for ``fileno()`` to become writable)."""
        ...

    def close(self) -> None: ...


class ReplyChannel(Protocol):
    """The worker's replies: read with ``os.read(fileno(), n)`` once ``select`` says so."""

    def fileno(self) -> int: ...

    def close(self) -> None: ...


class OutputStream(Protocol):
    """Everything the worker prints, until end of file."""

    def read1(self, size: int = ..., /) -> bytes: ...

    def close(self) -> None: ...


class WorkerProcess(Protocol):
    """A started loss worker, as :class:`harness.isolation.client.LossWorker` drives it."""

    @property
    def stdin(self) -> RequestChannel: ...

    @property
    def stdout(self) -> ReplyChannel: ...

    @property
    def stderr(self) -> OutputStream: ...

    def poll(self) -> int | None:
        """The exit code, or None while the worker runs."""
        ...

    def wait(self, timeout: float | None = None) -> int:
        """The exit code once the worker has exited; ``subprocess.TimeoutExpired`` after ``timeout``."""
        ...

    def kill(self) -> None:
        """Kill the worker and everything it started."""
        ...

    def release(self) -> None:
        """Called after :meth:`kill` and :meth:`wait`: remove whatever else the backend created."""
        ...


class _PipeWriter:
    """A pipe's write end as a :class:`RequestChannel`. The pipe is the trainer's alone, so it is
    made non-blocking."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.pipe = pipe
        self.fd = pipe.fileno()
        os.set_blocking(self.fd, False)

    def fileno(self) -> int:
        return self.fd

    def write_nowait(self, data: memoryview, /) -> int:
        return os.write(self.fd, data)

    def close(self) -> None:
        self.pipe.close()


class PipeProcess:
    """A :class:`WorkerProcess` that is a child process talking over pipes, in its own session so
    that :meth:`kill` takes its whole process group; ``cleanup`` runs in :meth:`release`."""

    def __init__(self, popen: subprocess.Popen[bytes], cleanup: Callable[[], None] | None = None) -> None:
        if popen.stdin is None or popen.stdout is None or popen.stderr is None:
            raise ValueError("the worker's stdin, stdout and stderr must all be pipes")
        self.popen = popen
        self.pid = popen.pid
        self._stdin = _PipeWriter(popen.stdin)
        self._stdout = popen.stdout
        self._stderr = cast(io.BufferedReader, popen.stderr)  # what Popen makes of a pipe (bufsize -1)
        self._cleanup = cleanup

    @property
    def stdin(self) -> _PipeWriter:
        return self._stdin

    @property
    def stdout(self) -> IO[bytes]:
        return self._stdout

    @property
    def stderr(self) -> io.BufferedReader:
        return self._stderr

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def release(self) -> None:
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            cleanup()


SANDBOX_UID = 65534  # the user the real sandboxes run the worker as ("nobody")


def stage(submission: Path, directory: Path | None = None, *, for_other_uid: bool = False) -> Path:
    """Copies of the worker script, the wire format beside it and the submission under neutral names
    (``worker.py``, ``wire.py``, ``submission.py``) in ``directory`` (which the caller made with
    :func:`private_dir`), else in a fresh private directory under the system's temp dir (returned):
    what a backend runs or mounts, so that nothing the worker can see (its command line,
    ``/proc/self/mountinfo``, ``__file__``) names the checkout, the runs directory or the
    submission's own name. The caller removes the directory when the worker is gone.

    Nothing staged is readable by another local user: the directory is 0700 (made by ``mkdtemp``: a
    new name each time, created atomically, never an existing path or a link) and the files 0600.
    ``for_other_uid``: the worker runs as :data:`SANDBOX_UID` on the host (Docker) and reaches the
    files through bind mounts, which do not pass through the private directory: as root they are
    handed to that user (0400); otherwise they are 0644, still behind the 0700 directory."""
    staged = Path(directory) if directory is not None else private_dir(STAGED_PREFIX)
    for source, name in ((WORKER_SCRIPT, "worker.py"), (WIRE_MODULE, "wire.py"), (Path(submission), "submission.py")):
        write_private(staged / name, Path(source).read_bytes(), for_other_uid=for_other_uid)
    return staged


def private_dir(prefix: str) -> Path:
    """A new directory under the system's temp dir that only this user can enter (0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    st = os.lstat(path)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:  # mkdtemp guarantees both; a changed umask does not matter
        raise OSError(f"{path} is not a private directory of this user")
    return path


def write_private(path: Path, data: bytes, *, for_other_uid: bool = False) -> None:
    """``data`` into a new file ``path`` (never an existing file or a link: ``O_EXCL | O_NOFOLLOW``)
    readable by this user only, or by the sandbox's user (see :func:`stage`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        hand_over(fd, for_other_uid, readable=True)
    finally:
        os.close(fd)


def hand_over(target: int | Path, for_other_uid: bool, *, readable: bool = False) -> None:
    """Give the sandbox's user access to ``target`` (an open file's descriptor, or a path inside a
    private directory: a bound socket): as root by ownership (0400 for a file it reads, 0600 for a
    socket it connects to), otherwise by mode (0644, 0666), which the private directory around it
    keeps from other local users. Without ``for_other_uid``: this user only (0600)."""
    if not for_other_uid:
        os.chmod(target, 0o600)
    elif os.geteuid() == 0:
        os.chown(target, SANDBOX_UID, SANDBOX_UID)
        os.chmod(target, 0o400 if readable else 0o600)
    else:
        os.chmod(target, 0o644 if readable else 0o666)


def spawn_pipes(argv: list[str], *, env: dict[str, str], cleanup: Callable[[], None] | None = None) -> PipeProcess:
    """``argv`` as a :class:`PipeProcess`: stdin, stdout and stderr piped, in a new session, no
    inherited file descriptors, started in ``/``."""
    popen = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd="/",
        start_new_session=True,
        close_fds=True,
    )
    return PipeProcess(popen, cleanup)


class Sandbox(ABC):
    """Launches the loss worker for one submission file."""

    name: str = ""
    #: What this backend does not protect against, shown to the user.
    warning: str | None = None

    @classmethod
    def problem(cls) -> str | None:
        """Why this backend cannot run on this host now, for the user; None when it can. The one
        hook a backend overrides to say so."""
        return None

    @final
    @classmethod
    def available(cls) -> bool:
        """Whether this backend can run on this host now (used by ``--sandbox auto``)."""
        return cls.problem() is None

    @abstractmethod
    def spawn(self, submission: Path) -> tuple[WorkerProcess, str]:
        """Start the worker on ``submission``. Returns the process and the submission's path as
        the worker sees it."""


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
        why = sandbox.problem()
        if why is not None:
            raise UsageError(f"the {name} sandbox is not available on this host ({why}); {NO_SANDBOX_HELP}")
        return sandbox, sandbox.warning
    for candidate in AUTO_ORDER:
        cls = _BACKENDS.get(candidate)
        if cls is not None and cls.available():
            return cls(), None
    if not allow_fallback:
        raise UsageError(f"no sandbox is available for untrusted code: {NO_SANDBOX_HELP}")
    none = get_sandbox("none")
    return none, (
        "NO SANDBOX AVAILABLE: the submission runs as a plain process that can read your files "
        f"and use the network (allowed for this demo profile only). To fix: {NO_SANDBOX_HELP}."
    )


from harness.isolation.sandbox import bwrap as _bwrap  # noqa: E402,F401  (registers the backends)
from harness.isolation.sandbox import docker as _docker  # noqa: E402,F401
from harness.isolation.sandbox import none as _none  # noqa: E402,F401
