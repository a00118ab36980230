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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.executors import Job, RunObserver
from harness.isolation.sandbox import Sandbox
from harness.protocol import EpochMetrics, RunResult, RunSpec
from harness.training.trainer import TrainHooks

STEP_BATCH = 10  # steps per progress event


PROGRESS_CALLS = ("run_placed", "run_started", "run_resumed", "steps_done", "epoch_done")
"""The :class:`~harness.executors.RunObserver` calls a run's progress becomes, in the driver."""


@dataclass(frozen=True)
class Progress:
    """One call of the driver's observer for the run ``key``: ``call`` is the method (one of
    :data:`PROGRESS_CALLS`), ``args`` its arguments after the run's spec."""

    key: object
    call: str
    args: tuple


@dataclass(frozen=True)
class Finished:
    key: object
    result: RunResult


@dataclass(frozen=True)
class Interrupted:
    """The run's process was stopped (SIGTERM, Ctrl-C) and has unwound; no result follows."""

    key: object


Event = Progress | Finished | Interrupted
Send = Callable[[Event], None]
INTERRUPTED = (
    "the run was stopped (SIGTERM or Ctrl-C) before it finished; its last per-epoch checkpoint "
    "is kept: run the same command again to resume it"
)


class Reporter(TrainHooks):
    """The trainer's hooks of one run, sent as :class:`Progress` events (steps in batches of
    ``STEP_BATCH``)."""

    def __init__(self, send: Send, key: object) -> None:
        self.send, self.key, self.pending = send, key, 0

    def started(self, total_steps: int) -> None:
        self.send(Progress(self.key, "run_started", (total_steps,)))

    def resumed(self, epochs_done: int, steps_done: int, notes: list[str]) -> None:
        self.send(Progress(self.key, "run_resumed", (epochs_done, steps_done, list(notes))))

    def step_done(self) -> None:
        self.pending += 1
        if self.pending >= STEP_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.send(Progress(self.key, "steps_done", (self.pending,)))
            self.pending = 0

    def epoch_done(self, metrics: EpochMetrics, best_fine_acc: float) -> None:
        self.flush()
        self.send(Progress(self.key, "epoch_done", (metrics, best_fine_acc)))


def deliver(event: Event, spec: RunSpec, observer: RunObserver) -> RunResult | None:
    """Replay one event of the run ``spec`` on ``observer``; returns the result of ``Finished``
    (whose ``run_finished`` is the executor's, with the recording)."""
    if isinstance(event, Progress):
        if event.call not in PROGRESS_CALLS:
            raise ValueError(f"unknown progress call {event.call!r}")
        getattr(observer, event.call)(spec, *event.args)
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


def placed_here(key: object) -> Progress:
    """The event saying that the run ``key`` runs in this process, on this host."""
    return Progress(key, "run_placed", (f"process {os.getpid()} on {socket.gethostname()}",))


def execute(
    job: Job,
    *,
    sandbox: Sandbox | str,
    send: Send,
    key: object,
    data=None,
    data_dir: Path | None = None,
    threads: int = 0,
    handle_signals: bool = False,
    arch_code: bytes | None = None,
) -> RunResult:
    """Carry out one run in this process, reporting through ``send``; returns the result (also sent
    as ``Finished``). :func:`execute_unit` with one job."""
    return execute_unit(
        [job],
        sandbox=sandbox,
        send=send,
        keys=[key],
        data=data,
        data_dir=data_dir,
        threads=threads,
        handle_signals=handle_signals,
        arch_code=arch_code,
    )[0]


def execute_unit(
    jobs: list[Job],
    *,
    sandbox: Sandbox | str,
    send: Send,
    keys: list[object],
    data=None,
    data_dir: Path | None = None,
    threads: int = 0,
    handle_signals: bool = False,
    arch_code: bytes | None = None,
) -> list[RunResult]:
    """Carry out one unit of work in this process (:func:`harness.executors.units`): one run, or the
    fused seeds of one run (:func:`harness.training.fused_run.run_fused`), reporting each job's
    progress through ``send`` under its key; returns the results in order (each also sent as
    ``Finished``).

    ``data`` is ``(train, test)`` when the caller hands the splits over, else they are loaded from
    ``data_dir``. A hidden architecture this process has not loaded is loaded from the file the
    spec names (``arch_code``: its bytes, when that file is on another machine). ``handle_signals``:
    the unit has a process of its own (a ``--jobs`` child), which stops cleanly on SIGTERM or its
    driver's death. Never raises for a failed run; raises ``KeyboardInterrupt`` when stopped.
    """
    from harness.isolation.sandbox import get_sandbox
    from harness.training.data import load_profile_data
    from harness.training.models import load_arch_file
    from harness.training.trainer import run_one

    if handle_signals:
        _stop_when_the_driver_dies()
        signal.signal(signal.SIGTERM, _stop_on_signal)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored as the driver is (nohup, cmd &)
            signal.signal(signal.SIGINT, _stop_on_signal)
    reporters = [Reporter(send, key) for key in keys]
    first = jobs[0]
    start = time.perf_counter()
    try:
        source = first.spec.arch_source
        if source is not None:
            load_arch_file(first.spec.arch, source.path, source.sha256, arch_code)
        train, test = data if data is not None else load_profile_data(first.spec.profile, data_dir)
        box = get_sandbox(sandbox) if isinstance(sandbox, str) else sandbox
        if len(jobs) == 1:
            outcomes = [
                run_one(
                    first.spec,
                    submission=first.submission,
                    train=train,
                    test=test,
                    run_dir=first.run_dir,
                    sandbox=box,
                    hooks=reporters[0],
                    threads=threads,
                )
            ]
        else:
            from harness.training.fused_run import run_fused

            outcomes = run_fused(
                [job.spec for job in jobs],
                submission=first.submission,
                train=train,
                test=test,
                run_dirs=[job.run_dir for job in jobs],
                sandbox=box,
                hooks=list(reporters),
                threads=threads,
            )
        results = [outcome.result for outcome in outcomes]
    except Exception as e:  # noqa: BLE001  (the trainers turn run failures into results; this is setup)
        failed = RunResult.failed(
            f"the run could not start training: {type(e).__name__}: {e}", wall_seconds=time.perf_counter() - start
        )
        results = [failed] * len(jobs)
    for reporter, key, result in zip(reporters, keys, results):
        reporter.flush()
        send(Finished(key, result))
    return results
