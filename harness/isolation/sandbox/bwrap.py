"""``bwrap``: the worker in a bubblewrap sandbox.

Enforced: new user, pid, network, ipc, uts and cgroup namespaces (no network at all); all
capabilities dropped, uid/gid 65534; the worker is the pid namespace's init (``--as-pid-1``: no host
path in /proc/1, and whatever it leaves behind dies with it); a cleared environment; a read-only
root that holds only /usr (and its /lib, /bin links), the interpreter the harness runs on and its
package directories, the worker script, the wire format beside it and the submission file, all
read-only; a fresh /proc and a minimal, read-only /dev; a size-capped tmpfs at /tmp; die-with-parent
and a new session; memory, process-count and CPU limits through a cgroup
(:mod:`harness.isolation.sandbox.limits`). No data, runs dir, leaderboard, home directory or host
environment variable is visible.

Neutral paths (:func:`python_layout`): wherever the environment lives (a virtual environment inside
the checkout, pyenv, conda, a ``--user`` install, one under /tmp), the interpreter's installation is
bound at ``/sandbox/python`` and each package directory outside it at ``/sandbox/site/N``; the worker
runs that interpreter with ``-I -S`` and exactly those directories on its path (a venv's base
interpreter sees the venv's packages only, as the venv does). What the worker sees (its command line,
``sys.path``, ``__file__``, ``sys.executable``, the mount points) names no host path; an interpreter
under /usr (a distribution's) keeps its path, which is the distribution's, not the user's. The
kernel's mount table still shows each bind's source directory within its host filesystem (the
``root`` field of /proc/self/mountinfo): that names where the environment lives and nothing else.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from harness.isolation.sandbox import (
    INSIDE_SUBMISSION,
    INSIDE_WIRE,
    INSIDE_WORKER,
    PipeProcess,
    Sandbox,
    register_sandbox,
    site_paths,
    spawn_pipes,
    stage,
    worker_argv,
)
from harness.isolation.sandbox.limits import CgroupSet, Limits, make_cgroups, rlimit_command
from harness.isolation.sandbox.none import SINGLE_THREAD_ENV

INSIDE_PYTHON = "/sandbox/python"  # the interpreter's installation (its prefix), read-only
INSIDE_SITE = "/sandbox/site"  # each package directory outside it: /sandbox/site/0, /sandbox/site/1, ...


@dataclass(frozen=True)
class PythonLayout:
    """How this interpreter reaches the sandbox: the read-only binds ``(host directory, path inside)``,
    the interpreter and the worker's package directories as the worker sees them, and the environment
    the interpreter needs there (its shared library's directory, for a build with a shared libpython)."""

    binds: tuple[tuple[Path, str], ...]
    executable: str
    sys_path: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@functools.cache
def python_layout() -> PythonLayout:
    """This interpreter's installation (the real ``sys.base_prefix``: a venv's base interpreter) at
    :data:`INSIDE_PYTHON` unless it is under /usr; every directory of :func:`site_paths` (and torch's, if
    it is elsewhere) at its place inside that, or at ``/sandbox/site/N``. No host path is named inside."""
    exe = Path(sys.executable).resolve()
    prefix = Path(sys.base_prefix).resolve()
    if not exe.is_relative_to(prefix):
        prefix = exe.parent.parent
    system = prefix.is_relative_to("/usr")  # bound at /usr already: the distribution's own paths
    binds: list[tuple[Path, str]] = [] if system else [(prefix, INSIDE_PYTHON)]

    def inside(path: Path) -> str | None:
        for host, where in [(Path("/usr"), "/usr"), *binds]:
            if path.is_relative_to(host):
                return str(Path(where) / path.relative_to(host))
        return None

    torch = importlib.util.find_spec("torch")
    packages = site_paths() + ([str(Path(torch.origin).parent.parent)] if torch and torch.origin else [])
    sys_path: list[str] = []
    for p in (Path(p).resolve() for p in packages):
        where = inside(p)
        if where is None:
            where = f"{INSIDE_SITE}/{len(binds) - (not system)}"
            binds.append((p, where))
        if where not in sys_path:
            sys_path.append(where)
    env: list[tuple[str, str]] = []
    libdir = sysconfig.get_config_var("LIBDIR")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and not system:
        env.append(("LD_LIBRARY_PATH", inside(Path(libdir).resolve()) or f"{INSIDE_PYTHON}/lib"))
    return PythonLayout(tuple(binds), inside(exe) or str(exe), tuple(sys_path), tuple(env))


def _root_links() -> list[str]:
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


PROBE = "import importlib.util, sys; sys.path += sys.argv[1:]; sys.exit(importlib.util.find_spec('torch') is None)"


@functools.cache
def bwrap_problem() -> str | None:
    """None when bwrap is installed, can create its namespaces here, and this interpreter starts
    inside the sandbox as the worker will and finds torch; otherwise what went wrong."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bwrap is not installed (apt-get install bubblewrap)"
    try:
        probe = subprocess.run(
            [exe, "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "true"], capture_output=True, timeout=20
        )
        if probe.returncode != 0:
            return f"bwrap cannot create its namespaces here: {probe.stderr.decode(errors='replace').strip()[-300:]}"
        layout = python_layout()
        inside = subprocess.run(
            _sandbox_args(exe, Limits(), None) + [layout.executable, "-I", "-S", "-B", "-c", PROBE, *layout.sys_path],
            capture_output=True,
            timeout=60,
            env={},
            cwd="/",
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"bwrap could not be run: {e}"
    if inside.returncode != 0:
        why = inside.stderr.decode(errors="replace").strip()[-300:] or "torch is not importable there"
        return f"this Python ({sys.executable}) cannot start inside bubblewrap with torch: {why}"
    return None


def _sandbox_args(exe: str, limits: Limits, staged: Path | None) -> list[str]:
    """bwrap's arguments up to the command it runs (no resource limits: those wrap the whole)."""
    layout = python_layout()
    env = dict(SINGLE_THREAD_ENV, PATH="/usr/bin:/bin", LANG="C.UTF-8", HOME="/tmp", **dict(layout.env))
    args = [
        exe,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--cap-drop",
        "ALL",
        # --as-pid-1: the worker itself is the pid namespace's init, so /proc/1/cmdline shows the
        # worker's command line, not bwrap's (host paths), and anything the submission leaves
        # behind dies with it
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--clearenv",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
        *_root_links(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--size",
        str(limits.tmpfs_bytes),
        "--tmpfs",
        "/tmp",
    ]
    for host, where in layout.binds:  # after /tmp's tmpfs, which would hide a venv under /tmp
        args += ["--ro-bind", str(host), where]
    if staged is not None:  # neutral copies (sandbox.stage): no host path of the run in the mount table
        args += ["--ro-bind", str(staged / "worker.py"), INSIDE_WORKER]
        args += ["--ro-bind", str(staged / "wire.py"), INSIDE_WIRE]
        args += ["--ro-bind", str(staged / "submission.py"), INSIDE_SUBMISSION]
    args += ["--remount-ro", "/", "--chdir", "/tmp"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args + ["--"]


@register_sandbox
class BwrapSandbox(Sandbox):
    name = "bwrap"

    @classmethod
    def problem(cls) -> str | None:
        return bwrap_problem()

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    def command(self, staged: Path, cgroups: CgroupSet) -> list[str]:
        exe = shutil.which("bwrap")
        if exe is None:
            raise FileNotFoundError("bwrap is not installed (apt-get install bubblewrap)")
        layout = python_layout()
        args = _sandbox_args(exe, self.limits, staged) + worker_argv(
            layout.executable, INSIDE_WORKER, list(layout.sys_path), no_site=True
        )
        prefix = cgroups.join_command() or rlimit_command(self.limits)
        return prefix + args

    def spawn(self, submission: Path) -> tuple[PipeProcess, str]:
        cgroups = make_cgroups(self.limits)
        staged = stage(submission)

        def cleanup() -> None:
            cgroups.release()
            shutil.rmtree(staged, ignore_errors=True)

        try:
            proc = spawn_pipes(self.command(staged, cgroups), env={}, cleanup=cleanup)
        except BaseException:
            cleanup()
            raise
        return proc, INSIDE_SUBMISSION
