"""Sharing a machine's CPUs between trainers: every harness trainer on a host (any process, any
user) holds a lease in one host-wide registry, and a trainer on the CPU sizes its torch threads to
its share: the CPUs this process may use (its affinity and its cgroup's CPU quota) divided by the
live trainers. Twelve busy threads on two cores spend their time waiting for each other; one
thread per trainer keeps the cores computing.

The registry is a directory (``$HARNESS_TRAINERS_DIR``, else ``<tmp>/harness-trainers``, sticky and
world-writable like ``/tmp``) with one empty file per live trainer, named ``<pid>-<start time>``:
a lease counts while that process runs with that start time (a reused pid does not count), and a
lease left by a killed trainer is ignored and removed by its owner's next trainer. OpenMP threads
wait without spinning between parallel regions (``OMP_WAIT_POLICY=PASSIVE``, set when the package
is imported, before torch starts its thread pool), so an idle thread leaves its core to the others.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from harness.procinfo import start_time

REGISTRY_ENV = "HARNESS_TRAINERS_DIR"
RECHECK_S = 5.0  # how often a running trainer looks at the registry again


def registry() -> Path:
    return Path(os.environ.get(REGISTRY_ENV) or Path(tempfile.gettempdir()) / "harness-trainers")


def _alive(lease: Path) -> bool:
    pid, _, start = lease.name.partition("-")
    return pid.isdigit() and bool(start) and start_time(int(pid)) == start


def usable_cpus() -> int:
    """CPUs this process may use: its affinity, capped by its cgroup's CPU quota (cgroup v2
    ``cpu.max``) when there is one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def live_trainers(directory: Path | None = None) -> int:
    """How many trainers hold a live lease (at least 1: the caller is about to train). Dead leases
    of this user are removed."""
    directory = directory or registry()
    n = 0
    try:
        leases = list(directory.iterdir())
    except OSError:
        return 1
    for lease in leases:
        if _alive(lease):
            n += 1
            continue
        try:
            if lease.stat().st_uid == os.getuid():
                lease.unlink()
        except OSError:
            pass
    return max(1, n)


def fair_threads(directory: Path | None = None) -> int:
    """Threads for one trainer: its share of the usable CPUs among the live trainers (at least 1)."""
    return max(1, usable_cpus() // live_trainers(directory))


class CpuShare:
    """A trainer's lease and its thread count (CPU runs only; a GPU run holds no lease). ``cap``: at
    most this many threads (an executor's own split, e.g. ``--jobs N``; 0: none). Use as a context
    manager around training; call :meth:`tick` now and then (it looks at the registry at most
    every :data:`RECHECK_S` seconds and resizes torch's pool when the share changed)."""

    def __init__(self, device_type: str, cap: int = 0, directory: Path | None = None) -> None:
        self.active = device_type == "cpu"
        self.cap, self.dir = cap, directory or registry()
        self.lease: Path | None = None
        self.threads = 0
        self._checked = 0.0

    def __enter__(self) -> CpuShare:
        if self.active:
            start = start_time(os.getpid())
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                if self.dir.stat().st_uid == os.getuid():
                    self.dir.chmod(0o1777)  # every user's trainers share it, as /tmp
                if start is not None:
                    self.lease = self.dir / f"{os.getpid()}-{start}"
                    self.lease.touch()
            except OSError:
                self.lease = None  # no registry: the trainer still runs, sized to the whole machine
            self.tick(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.lease is not None:
            self.lease.unlink(missing_ok=True)

    def tick(self, force: bool = False) -> None:
        if not self.active or (not force and time.monotonic() - self._checked < RECHECK_S):
            return
        import torch

        self._checked = time.monotonic()
        threads = fair_threads(self.dir)
        if self.cap:
            threads = min(threads, self.cap)
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
