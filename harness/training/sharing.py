"""Sharing a machine's CPUs between trainers, from what the kernel says alone: a trainer on the CPU
sizes its torch threads to its share of the CPUs this process may use (its affinity and its
cgroup's CPU quota), given the other processes that are busy on them now. Twelve busy threads on two
cores spend their time waiting for each other; one thread per trainer keeps the cores computing.

Nothing another local user can write is read: no shared registry, no file in ``/tmp``. The
competition is measured in ``/proc`` (each visible process's CPU time, sampled at start and then at
most every :data:`RECHECK_S` seconds): a process that used at least :data:`BUSY` of a CPU over the
last window is a competitor, and the others' total use is the load. The share is the larger of an
equal split (the CPUs over 1 + competitors) and what the others leave idle, at least one thread::

    threads = max(1, max(cpus // (1 + competitors), round(cpus - load)))

So two trainers on two cores take one thread each, whichever started first; on 64 cores a trainer
next to one with 64 threads settles at about half; a single-threaded neighbour costs one core, not
half the machine. A neighbour can change the share only by using the CPU (a sleeping process, a
file, a forged name count for nothing), and a scan reads at most :data:`MAX_PROCESSES` entries. This
process and its descendants (a ``none`` or bubblewrap loss worker) are not competitors.
``$HARNESS_THREADS=N`` fixes every CPU trainer's threads instead (the operator's choice; sharing off).
OpenMP threads wait without spinning between parallel regions (``OMP_WAIT_POLICY=PASSIVE``, set
when the package is imported, before torch starts its thread pool), so an idle thread leaves its
core to the others.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

RECHECK_S = 5.0  # how often a running trainer measures the competition again
FIRST_WINDOW_S = 0.25  # the first measurement, when a trainer starts
BUSY = 0.25  # of one CPU over the window: a process using at least this much is a competitor
MAX_PROCESSES = 8192  # /proc entries read per scan, at most
THREADS_ENV = "HARNESS_THREADS"
PROC = Path("/proc")


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


def fixed_threads() -> int | None:
    """``$HARNESS_THREADS`` as a positive number of threads, else None."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isascii() and value.isdigit() and int(value) > 0 else None


@dataclass(frozen=True)
class Sample:
    """One scan of ``/proc``: each visible process's CPU time in clock ticks and its parent."""

    at: float
    ticks: dict[int, int]
    parents: dict[int, int]


def sample(proc: Path = PROC, limit: int = MAX_PROCESSES) -> Sample:
    """CPU time (user + system, all threads) and parent of each process visible in ``proc``, reading
    at most ``limit`` entries; a process that ends while it is read, or an entry that is not a
    process, is skipped."""
    ticks: dict[int, int] = {}
    parents: dict[int, int] = {}
    try:
        entries = os.scandir(proc)
    except OSError:
        return Sample(time.monotonic(), ticks, parents)
    with entries:
        for n, entry in enumerate(entries):
            if n >= limit:
                break
            name = entry.name
            if not (name.isascii() and name.isdigit()):
                continue
            try:
                with open(f"{proc}/{name}/stat", "rb") as f:
                    stat = f.read(4096)
                fields = stat.rpartition(b")")[2].split()  # after the command name, which may hold anything
                pid = int(name)
                parents[pid] = int(fields[1])
                ticks[pid] = int(fields[11]) + int(fields[12])
            except (OSError, ValueError, IndexError):
                continue
    return Sample(time.monotonic(), ticks, parents)


def _descendants(me: int, parents: dict[int, int]) -> set[int]:
    """``me`` and every process below it."""
    family, grew = {me}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    return family


@dataclass(frozen=True)
class Competition:
    """Other processes busy on this machine over one window: how many, and the CPUs they used."""

    competitors: int
    load: float


def competition(before: Sample, after: Sample, me: int | None = None) -> Competition:
    """The competition between two samples, leaving out ``me`` (default: this process) and its
    descendants. A process seen only in ``after`` is counted from its whole CPU time so far."""
    family = _descendants(os.getpid() if me is None else me, after.parents)
    seconds = max(after.at - before.at, 1e-3)
    hz = os.sysconf("SC_CLK_TCK")
    competitors, load = 0, 0.0
    for pid, ticks in after.ticks.items():
        if pid in family:
            continue
        used = max(0, ticks - before.ticks.get(pid, 0)) / hz / seconds
        if pid not in before.ticks:
            used = min(used, 1.0)  # new since the last look: its past says little about now
        load += used
        competitors += used >= BUSY
    return Competition(competitors, load)


def fair_threads(cpus: int, seen: Competition) -> int:
    """Threads for one trainer on ``cpus`` CPUs next to ``seen`` (see the module's docstring)."""
    return max(1, cpus // (1 + seen.competitors), round(cpus - seen.load))


class CpuShare:
    """A trainer's thread count (CPU runs only; a GPU run leaves torch's threads alone). ``cap``: at
    most this many threads (an executor's own split, e.g. ``--jobs N``; 0: none). Use as a context
    manager around training; call :meth:`tick` now and then (it measures the competition at most
    every :data:`RECHECK_S` seconds and resizes torch's pool when the share changed)."""

    def __init__(self, device_type: str, cap: int = 0, proc: Path = PROC) -> None:
        self.active = device_type == "cpu"
        self.cap, self.proc = cap, proc
        self.threads = 0
        self._last: Sample | None = None

    def __enter__(self) -> CpuShare:
        if self.active:
            self._last = sample(self.proc)
            if fixed_threads() is None:
                time.sleep(FIRST_WINDOW_S)  # a first window to measure the competition over
            self.tick(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def tick(self, force: bool = False) -> None:
        if not self.active or self._last is None or (not force and time.monotonic() - self._last.at < RECHECK_S):
            return
        import torch

        now = sample(self.proc)
        threads = fixed_threads() or fair_threads(usable_cpus(), competition(self._last, now))
        self._last = now
        if self.cap:
            threads = min(threads, self.cap)
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
