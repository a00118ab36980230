"""One run, wherever it runs, and the events it sends to the driver.

:func:`execute` is the one way a run is carried out, by every executor: it loads the data (unless
it is handed over), calls :func:`harness.training.trainer.run_one` with a :class:`Reporter` as its hooks, and
sends what happens as small typed events through ``send`` (a pipe, a Ray actor, or a direct call
for the inline executor). The driver's side, :func:`deliver`, turns each event into a call of its
:class:`~harness.executors.RunObserver`. Every event carries the ``key`` the executor gave the run.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.executors import Job, RunObserver
from harness.isolation.sandbox import Sandbox
from harness.protocol import EpochMetrics, RunResult, RunSpec
from harness.training.trainer import TrainHooks

STEP_BATCH = 10  # steps per progress event


@dataclass(frozen=True)
class Placed:
    key: object
    where: str  # the process and host the run went to


@dataclass(frozen=True)
class Started:
    key: object
    total_steps: int


@dataclass(frozen=True)
class Resumed:
    key: object
    epochs_done: int
    steps_done: int
    notes: list[str]


@dataclass(frozen=True)
class Steps:
    key: object
    count: int


@dataclass(frozen=True)
class EpochDone:
    key: object
    metrics: EpochMetrics
    best_fine_acc: float


@dataclass(frozen=True)
class Finished:
    key: object
    result: RunResult


@dataclass(frozen=True)
class Interrupted:
    """The run's process was stopped (SIGTERM, Ctrl-C) and has unwound; no result follows."""

    key: object


Event = Placed | Started | Resumed | Steps | EpochDone | Finished | Interrupted
Send = Callable[[Event], None]
INTERRUPTED = ("the run was stopped (SIGTERM or Ctrl-C) before it finished; its last per-epoch checkpoint "
               "is kept: run the same command again to resume it")


class Reporter(TrainHooks):
    """The trainer's hooks of one run: each becomes an event (steps in batches of ``STEP_BATCH``)."""

    def __init__(self, send: Send, key: object) -> None:
        self.send, self.key, self.pending = send, key, 0

    def started(self, total_steps: int) -> None:
        self.send(Started(self.key, total_steps))

    def resumed(self, epochs_done: int, steps_done: int, notes: list[str]) -> None:
        self.send(Resumed(self.key, epochs_done, steps_done, list(notes)))

    def step_done(self) -> None:
        self.pending += 1
        if self.pending >= STEP_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.send(Steps(self.key, self.pending))
            self.pending = 0

    def epoch_done(self, metrics: EpochMetrics, best_fine_acc: float) -> None:
        self.flush()
        self.send(EpochDone(self.key, metrics, best_fine_acc))


def deliver(event: Event, spec: RunSpec, observer: RunObserver) -> RunResult | None:
    """Replay one event of the run ``spec`` on ``observer``; returns the result of ``Finished``
    (whose ``run_finished`` is the executor's, with the recording)."""
    if isinstance(event, Placed):
        observer.run_placed(spec, event.where)
    elif isinstance(event, Started):
        observer.run_started(spec, event.total_steps)
    elif isinstance(event, Resumed):
        observer.run_resumed(spec, event.epochs_done, event.steps_done, event.notes)
    elif isinstance(event, Steps):
        observer.steps_done(spec, event.count)
    elif isinstance(event, EpochDone):
        observer.epoch_done(spec, event.metrics, event.best_fine_acc)
    elif isinstance(event, Finished):
        return event.result
    return None


def _stop_on_signal(signum: int, frame: object) -> None:
    """SIGTERM (the driver stopping) or SIGINT (Ctrl-C): unwind through the run's cleanup once;
    later signals are swallowed so the cleanup (sandbox removal) completes. A Python no-op,
    not SIG_IGN: a signal already pending would otherwise raise "ignored due to race condition"."""
    signal.signal(signal.SIGTERM, _swallow)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _swallow)
    raise KeyboardInterrupt


def _swallow(signum: int, frame: object) -> None:
    pass


def _stop_when_the_driver_dies() -> None:
    """Linux: SIGTERM this process when its parent (the driver) dies, e.g. by SIGKILL, so that the
    run stops cleanly instead of training on with nobody to record it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def placed_here(key: object) -> Placed:
    """The event saying that the run ``key`` runs in this process, on this host."""
    return Placed(key, f"process {os.getpid()} on {socket.gethostname()}")


def execute(job: Job, *, sandbox: Sandbox | str, send: Send, key: object, data=None, data_dir: Path | None = None,
            threads: int = 0, handle_signals: bool = False) -> RunResult:
    """Carry out one run in this process, reporting through ``send``; returns the result (also sent
    as ``Finished``).

    ``data`` is ``(train, test)`` when the caller hands the splits over, else they are loaded from
    ``data_dir``. ``handle_signals``: the run has a process of its own (a ``--jobs`` child), which
    stops cleanly on SIGTERM or its driver's death. Never raises for a failed run; raises
    ``KeyboardInterrupt`` when stopped.
    """
    import torch

    from harness.isolation.sandbox import get_sandbox
    from harness.training.data import load_profile_data
    from harness.training.trainer import run_one

    if handle_signals:
        _stop_when_the_driver_dies()
        signal.signal(signal.SIGTERM, _stop_on_signal)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored as the driver is (nohup, cmd &)
            signal.signal(signal.SIGINT, _stop_on_signal)
    if threads:
        torch.set_num_threads(threads)
    reporter = Reporter(send, key)
    try:
        train, test = data if data is not None else load_profile_data(job.spec.profile, data_dir)
        box = get_sandbox(sandbox) if isinstance(sandbox, str) else sandbox
        result = run_one(job.spec, submission=job.submission, train=train, test=test, run_dir=job.run_dir,
                         sandbox=box, hooks=reporter).result
    except Exception as e:  # noqa: BLE001  (run_one turns run failures into results; this is setup)
        result = RunResult.failed(f"the run could not start training: {type(e).__name__}: {e}")
    reporter.flush()
    send(Finished(key, result))
    return result
