"""``bwrap``: the worker in a bubblewrap sandbox.

Enforced: new user, pid, network, ipc, uts and cgroup namespaces (no network at all); all
capabilities dropped, uid/gid 65534; the worker is the pid namespace's init (``--as-pid-1``: no
host path in /proc/1, and whatever it leaves behind dies with it); a cleared environment; a read-only root that holds
only /usr (and its /lib, /bin links), the interpreter the harness runs on with its package
directories (a virtual environment, pyenv, conda or a ``--user`` install alike, bound after
the /tmp tmpfs so that one under /tmp stays visible), the worker script and the submission
file, all read-only; a fresh /proc and a minimal, read-only /dev;
a size-capped tmpfs at /tmp; die-with-parent and a new session; memory, process-count and
CPU limits through a cgroup (:mod:`harness.isolation.sandbox.limits`). No data, runs dir,
leaderboard, home directory or host environment variable is visible.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.isolation.sandbox import (
    INSIDE_SUBMISSION,
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


def _python_paths() -> list[Path]:
    """Directories the worker's interpreter needs, each at the path it is used by and at its real
    path: the prefixes (a venv's and its base interpreter's), the interpreter's installation,
    torch's parent and the package directories on ``sys.path``."""
    import torch

    python = Path(sys.executable)
    used = [
        Path(sys.base_prefix),
        Path(sys.prefix),
        python.parent,
        Path(torch.__file__).parent.parent,
        *(Path(p) for p in site_paths()),
    ]
    paths = {q for p in used for q in (Path(os.path.abspath(p)), p.resolve())}
    paths.add(python.resolve().parent.parent)
    keep: list[Path] = []
    for p in sorted(paths, key=lambda p: len(p.parts)):
        if not any(p.is_relative_to(k) for k in keep):
            keep.append(p)
    return keep


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
        inside = subprocess.run(
            _sandbox_args(exe, Limits(), None) + [sys.executable, "-I", "-B", "-c", PROBE, *site_paths()],
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
    env = dict(SINGLE_THREAD_ENV, PATH="/usr/bin:/bin", LANG="C.UTF-8", HOME="/tmp")
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
    for path in _python_paths():  # after /tmp's tmpfs, which would hide a venv under /tmp
        args += ["--ro-bind", str(path), str(path)]
    if staged is not None:  # neutral copies (sandbox.stage): no host path of the run in the mount table
        args += ["--ro-bind", str(staged / "worker.py"), INSIDE_WORKER]
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
        args = _sandbox_args(exe, self.limits, staged) + worker_argv(sys.executable, INSIDE_WORKER)
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
