"""One run, wherever it runs, and the events it sends to the driver.

:func:`execute` is the one way a run is carried out, by every executor: it loads the data (unless
it is handed over), calls :func:`harness.training.trainer.run_one` with a :class:`Reporter` as its
observer, and sends what happens as :class:`Keyed` events (:mod:`harness.events`) through ``send``
(a pipe, a Ray actor, or a direct call for the inline executor). The driver's side,
:func:`deliver`, hands each progress event to its :class:`~harness.events.RunObserver`. Every event
carries the ``key`` the executor gave the run.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.events import RunEvent, RunFinished, RunInterrupted, RunObserver, RunPlaced, StepsDone
from harness.executors import Job
from harness.isolation.sandbox import Sandbox
from harness.protocol import RunResult, RunSpec

STEP_BATCH = 10  # steps per progress event


@dataclass(frozen=True)
class Keyed:
    """An event of the run the executor calls ``key`` (picklable: it crosses pipes and Ray)."""

    key: object
    event: RunEvent


Send = Callable[[Keyed], None]
INTERRUPTED = (
    "the run was stopped (SIGTERM or Ctrl-C) before it finished; its last per-epoch checkpoint "
    "is kept: run the same command again to resume it"
)


class Reporter(RunObserver):
    """The trainer's events of one run, sent under ``key`` (steps in batches of ``STEP_BATCH``)."""

    def __init__(self, send: Send, key: object) -> None:
        self.send, self.key, self.pending = send, key, 0

    def on_event(self, spec: RunSpec, event: RunEvent) -> None:
        match event:
            case StepsDone(steps):
                self.pending += steps
                if self.pending >= STEP_BATCH:
                    self.flush()
            case _:
                self.flush()  # the steps before it arrive first
                self.send(Keyed(self.key, event))

    def flush(self) -> None:
        if self.pending:
            self.send(Keyed(self.key, StepsDone(self.pending)))
            self.pending = 0


def deliver(message: Keyed, spec: RunSpec, observer: RunObserver) -> None:
    """Hand one progress event of the run ``spec`` to ``observer``. The end of a run
    (:class:`~harness.events.RunFinished`, :class:`~harness.events.RunInterrupted`) is the executor's:
    its :meth:`~harness.executors.Executor.finish` tells the observer, after the recording."""
    match message.event:
        case RunFinished() | RunInterrupted():
            pass
        case event:
            observer.on_event(spec, event)


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


def placed_here(key: object) -> Keyed:
    """The event saying that the run ``key`` runs in this process, on this host."""
    return Keyed(key, RunPlaced(f"process {os.getpid()} on {socket.gethostname()}"))


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
    as :class:`~harness.events.RunFinished`). :func:`execute_unit` with one job."""
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
    :class:`~harness.events.RunFinished`).

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
                    observer=reporters[0],
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
                observers=list(reporters),
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
        send(Keyed(key, RunFinished(result)))
    return results
