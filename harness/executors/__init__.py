"""Executors: how the planned (submission, architecture, seed) runs of an evaluation are carried out.

- :class:`~harness.executors.inline.InlineExecutor`: one after another in this process (``--jobs 1``).
- :class:`~harness.executors.local.LocalExecutor`: up to N at once, one child process per run (``--jobs N``).
- :class:`~harness.executors.ray_tasks.RayExecutor`: each run a Ray task (``--executor ray``).

Every executor calls ``on_result`` in the driver once per job, in the order the runs end, and
feeds the observer; only the driver writes the leaderboard. A run that fails (the submission, the
worker, a lost process) ends as a ``failed`` result with its reason, and the others go on.
``KeyboardInterrupt`` stops every run cleanly (loss workers and their sandboxes removed,
checkpoints kept), records the results that had already arrived, and is re-raised.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.protocol import RunResult, RunSpec
from harness.train import RunObserver


@dataclass(frozen=True)
class Job:
    """One run: what to train, where its files go, and the submission copy it uses."""

    spec: RunSpec
    run_dir: Path
    submission: Path


def run_key(spec: RunSpec) -> tuple[str, str, int]:
    """Identifies a run within one evaluation (several files may be evaluated together)."""
    return (spec.submission_sha256, spec.arch, spec.seed)


OnResult = Callable[[Job, RunResult], None]

#: How long a stopping run may take to unwind (remove its sandbox) before it is killed.
STOP_GRACE_S = 20.0


class Executor(ABC):
    @abstractmethod
    def run(self, jobs: list[Job], observer: RunObserver, on_result: OnResult) -> None:
        """Carry out ``jobs``; ``on_result`` is called in the driver as each ends."""
