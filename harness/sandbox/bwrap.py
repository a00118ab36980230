"""``bwrap``: the worker in a bubblewrap sandbox.

Enforced: new user, pid, network, ipc, uts and cgroup namespaces (no network at all); all
capabilities dropped, uid/gid 65534; a cleared environment; a read-only root that holds
only /usr (and its /lib, /bin links), the Python installation, the torch package, the
worker script and the submission file, all read-only; a fresh /proc and a minimal /dev;
a size-capped tmpfs at /tmp; die-with-parent and a new session; memory, process-count and
CPU limits through a cgroup (:mod:`harness.sandbox.limits`). No data, runs dir,
leaderboard, home directory or host environment variable is visible.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO

from harness.sandbox import WORKER_SCRIPT, Sandbox, register_sandbox
from harness.sandbox.limits import CgroupSet, Limits, make_cgroups, rlimit_command
from harness.sandbox.none import SINGLE_THREAD_ENV

INSIDE_WORKER = "/sandbox/worker.py"
INSIDE_SUBMISSION = "/sandbox/submission.py"


def _python_paths() -> list[Path]:
    """Directories the worker's interpreter needs: the prefix(es) and torch's parent."""
    import torch

    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
             Path(torch.__file__).resolve().parent.parent}
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


@functools.cache
def bwrap_available() -> bool:
    """bwrap is installed and can create the namespaces it needs on this host."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    try:
        probe = subprocess.run([exe, "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "true"],
                               capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


@register_sandbox
class BwrapSandbox(Sandbox):
    name = "bwrap"

    @classmethod
    def available(cls) -> bool:
        return bwrap_available()

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._cgroups: dict[int, CgroupSet] = {}

    def command(self, submission: Path, cgroups: CgroupSet) -> list[str]:
        exe = shutil.which("bwrap")
        if exe is None:
            raise FileNotFoundError("bwrap is not installed (apt-get install bubblewrap)")
        python = Path(sys.executable)
        env = dict(SINGLE_THREAD_ENV, PATH="/usr/bin:/bin", LANG="C.UTF-8", HOME="/tmp")
        args = [exe, "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL",
                "--die-with-parent", "--new-session", "--clearenv", "--hostname", "sandbox",
                "--ro-bind", "/usr", "/usr", *_root_links()]
        for path in _python_paths():
            args += ["--ro-bind", str(path), str(path)]
        args += ["--ro-bind", str(WORKER_SCRIPT), INSIDE_WORKER,
                 "--ro-bind", str(Path(submission).resolve()), INSIDE_SUBMISSION,
                 "--proc", "/proc", "--dev", "/dev",
                 "--size", str(self.limits.tmpfs_bytes), "--tmpfs", "/tmp",
                 "--remount-ro", "/", "--chdir", "/tmp"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        args += ["--", str(python), "-I", "-B", INSIDE_WORKER]
        prefix = cgroups.join_command() or rlimit_command(self.limits)
        return prefix + args

    def spawn(self, submission: Path, *, stderr: IO[bytes] | int) -> tuple[subprocess.Popen, str]:
        cgroups = make_cgroups(self.limits)
        try:
            proc = subprocess.Popen(self.command(submission, cgroups), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=stderr, env={}, cwd="/",
                                    start_new_session=True, close_fds=True)
        except BaseException:
            cgroups.release()
            raise
        self._cgroups[proc.pid] = cgroups
        return proc, INSIDE_SUBMISSION

    def release(self, proc: subprocess.Popen) -> None:
        cgroups = self._cgroups.pop(proc.pid, None)
        if cgroups is not None:
            cgroups.release()
