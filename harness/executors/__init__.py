"""Executors: how an evaluation's planned runs are carried out, and what the driver hears of them.

- :class:`~harness.executors.inline.InlineExecutor`: one after another in this process (``--jobs 1``).
- :class:`~harness.executors.local.LocalExecutor`: up to N at once, one child process per run (``--jobs N``).
- :class:`~harness.executors.ray_tasks.RayExecutor`: each run a Ray task (``--executor ray``).

Every executor carries a run out through the same function,
:func:`harness.executors.events.execute`, wherever it runs; the run's progress comes back as
small typed events (:mod:`harness.events`) that :func:`~harness.executors.events.deliver` hands to
the driver's :class:`~harness.events.RunObserver`. Each job ends in the driver with
:meth:`Executor.finish`: a failed run's reason in its ``failure.txt``, the observer's
:class:`~harness.events.RunFinished`, then ``on_result`` (which
records the row; only the driver writes the leaderboard), in the order the runs end. A run that
fails (the submission, the worker, a lost process) ends as a ``failed`` result with its reason,
and the others go on.
``KeyboardInterrupt`` stops every run cleanly (loss workers and their sandboxes removed,
checkpoints kept), records the results that had already arrived, and is re-raised.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.events import RunFinished
from harness.events import RunObserver as RunObserver  # re-exported: the executors' observer
from harness.protocol import RunResult, RunSpec
from harness.results.rundir import RunDir


@dataclass(frozen=True)
class Job:
    """One run: what to train, where its files go, and the submission copy it uses."""

    spec: RunSpec
    run_dir: RunDir
    submission: Path


OnResult = Callable[[Job, RunResult], None]


def units(jobs: list[Job]) -> list[list[Job]]:
    """The jobs as processes carry them out: the fused seeds of one run (``spec.fused``: one entry,
    file version, architecture and settings) together, every other job alone; in the order of each
    unit's first job."""
    groups: dict[object, list[Job]] = {}
    for i, job in enumerate(jobs):
        key = (str(job.submission), job.spec.model_dump_json(exclude={"seed", "fused"})) if job.spec.fused else i
        groups.setdefault(key, []).append(job)
    return list(groups.values())


#: How long a stopping run may take to unwind (remove its sandbox) before it is killed.
STOP_GRACE_S = 20.0


class Executor(ABC):
    @abstractmethod
    def run(self, jobs: list[Job], observer: RunObserver, on_result: OnResult) -> None:
        """Carry out ``jobs``; each ends with :meth:`finish`, in the driver."""

    @staticmethod
    def finish(job: Job, result: RunResult, observer: RunObserver, on_result: OnResult) -> None:
        """End ``job`` in the driver. A failed run's reason is in its ``failure.txt`` whatever failed
        (the trainer writes it; a run that never reached training, a process that died or a lost
        Ray task gets it here)."""
        if result.status == "failed" and result.reason:
            job.run_dir.note_failure(job.spec, result.reason)
        observer.on_event(job.spec, RunFinished(result))
        on_result(job, result)
