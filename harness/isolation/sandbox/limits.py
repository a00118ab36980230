"""Resource limits for a sandboxed worker: a cgroup per worker when the host allows it
(memory, process count, one CPU), else rlimits (memory only; a process cap needs a cgroup
when the harness runs as root, since RLIMIT_NPROC counts all of root's processes).

The worker joins its cgroup before ``exec``ing the sandbox (a ``sh`` wrapper writes its own
pid to ``cgroup.procs``), so nothing the submission runs escapes the limits; on release,
every process still in the cgroup is killed and the cgroup removed.
"""

from __future__ import annotations

import os
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

CGROUP_ROOT = Path("/sys/fs/cgroup")


class Limits(BaseModel):
    """What every real backend enforces on the loss worker."""

    model_config = ConfigDict(frozen=True)

    memory_bytes: int = 1 << 30  # 1 GiB: torch itself needs ~300 MB
    max_processes: int = 32
    cpus: float = 1.0
    tmpfs_bytes: int = 16 << 20
    # CPU time of the whole worker, where no cgroup caps its rate (the rlimit fallback): the per-run
    # budget counts only the trainer's waits for replies, not CPU burnt between calls
    cpu_seconds: int = 7200


@dataclass
class CgroupSet:
    """The cgroup directories of one worker (v1: one per controller; v2: one)."""

    dirs: list[Path] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)

    def join_command(self) -> list[str]:
        """``sh -c`` prefix that moves the shell into the cgroups, then execs the rest."""
        if not self.dirs:
            return []
        script = "".join(f'echo $$ > "{d}/cgroup.procs" && ' for d in self.dirs) + 'exec "$@"'
        return ["/bin/sh", "-c", script, "sh"]

    def release(self) -> None:
        for d in self.dirs:
            for _ in range(50):
                try:
                    pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            try:
                d.rmdir()
            except OSError:
                pass


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def make_cgroups(limits: Limits) -> CgroupSet:
    """Create and configure cgroups for one worker; an empty set when cgroups are unusable."""
    name = f"harness-{uuid.uuid4().hex[:12]}"
    cg = CgroupSet()
    try:
        if (CGROUP_ROOT / "cgroup.controllers").exists():  # cgroup v2
            d = CGROUP_ROOT / "harness" / name
            d.mkdir(parents=True)
            cg.dirs.append(d)
            _write(d / "memory.max", str(limits.memory_bytes))
            _write(d / "pids.max", str(limits.max_processes))
            _write(d / "cpu.max", f"{int(limits.cpus * 100000)} 100000")
            cg.applied += ["memory", "pids", "cpu"]
            return cg
        for controller, settings in (
            ("memory", {"memory.limit_in_bytes": str(limits.memory_bytes)}),
            ("pids", {"pids.max": str(limits.max_processes)}),
            ("cpu", {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": str(int(limits.cpus * 100000))}),
        ):
            d = CGROUP_ROOT / controller / "harness" / name
            d.mkdir(parents=True)
            cg.dirs.append(d)
            for key, value in settings.items():
                _write(d / key, value)
            if controller == "memory":  # no swap either, where the kernel accounts it
                try:
                    _write(d / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
                except OSError:
                    pass
            cg.applied.append(controller)
    except OSError:
        cg.release()
        return CgroupSet()
    return cg


def rlimit_command(limits: Limits) -> list[str]:
    """``prlimit`` prefix for hosts without usable cgroups: memory (address space, not RSS: with
    headroom) and total CPU time (SIGXCPU, then SIGKILL); no process count, no CPU rate."""
    return ["prlimit", f"--as={limits.memory_bytes * 4}", f"--cpu={limits.cpu_seconds}", "--"]
