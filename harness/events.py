"""What a run reports as it goes: one frozen dataclass per event, and the one observer of them.

The trainer (:func:`~harness.training.trainer.run_one`, :func:`~harness.training.fused_run.run_fused`)
reports :class:`RunStarted`, :class:`RunResumed`, :class:`StepsDone` and :class:`EpochDone`; the
executors carry them to the driver (:mod:`harness.executors.events`: steps in batches, each event
under its run's key) and add :class:`RunPlaced`, :class:`RunRetrying`, :class:`RunFinished` and
:class:`RunInterrupted`. Whoever listens, a test stopping a run after an epoch or the live display
(:mod:`harness.report.progress`), is a :class:`RunObserver`: its ``on_event`` gets each event with the
run's spec and tells the events apart by their type (a ``match`` statement that mypy checks).

Every event holds plain, picklable values (ints, strings, the protocol's pydantic records): they
cross process boundaries through pipes (``--jobs N``) and Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from harness.protocol import EpochMetrics, RunResult, RunSpec


@dataclass(frozen=True)
class RunPlaced:
    """The run has a process of its own: ``where`` says which, on which host."""

    where: str


@dataclass(frozen=True)
class RunStarted:
    """The run starts (or goes on) training; ``total_steps`` over all its epochs."""

    total_steps: int


@dataclass(frozen=True)
class RunResumed:
    """The run goes on from a checkpoint after ``epochs_done`` epochs (``steps_done`` steps), or
    from scratch (0) when ``notes`` say why no checkpoint could be used."""

    epochs_done: int
    steps_done: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepsDone:
    """``steps`` more training steps done (the trainer reports each; executors send them in batches)."""

    steps: int = 1


ONE_STEP = StepsDone(1)


@dataclass(frozen=True)
class EpochDone:
    """An epoch is trained, tested and checkpointed."""

    metrics: EpochMetrics
    best_fine_acc: float


@dataclass(frozen=True)
class RunRetrying:
    """The run's Ray task was lost; attempt ``attempt`` of ``retries`` resumes it."""

    attempt: int
    retries: int
    reason: str


@dataclass(frozen=True)
class RunFinished:
    """The run ended (``ok`` or ``failed``) with ``result``."""

    result: RunResult


@dataclass(frozen=True)
class RunInterrupted:
    """The run's process was stopped (SIGTERM, Ctrl-C) and has unwound; no result follows."""


TrainEvent = RunStarted | RunResumed | StepsDone | EpochDone
"""What the trainer reports."""

RunEvent = RunPlaced | RunStarted | RunResumed | StepsDone | EpochDone | RunRetrying | RunFinished | RunInterrupted
"""Every event of a run."""


class RunObserver:
    """The one observer of runs: ``on_event`` gets each event of the run ``spec`` (the default
    ignores them all)."""

    def on_event(self, spec: RunSpec, event: RunEvent) -> None:
        pass


def unhandled(event: NoReturn) -> NoReturn:
    """The last case of an observer's ``match``: mypy reports an event type no case handles."""
    raise TypeError(f"no case for the event {event!r}")
