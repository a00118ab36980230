"""The messages between a run's own process (a ``--jobs`` child or a Ray task) and the driver.

The run's side, :func:`execute`, loads the data (unless it is handed over), starts the loss
worker in the sandbox, calls :func:`harness.train.run_one` and sends progress as plain tuples
through ``send``; the driver's side, :func:`dispatch`, turns them back into observer calls.
Events: ``placed`` (process id and host, where the run went), ``started``, ``resumed``,
``steps`` (batched), ``epoch``, ``finished`` (the result, as JSON), ``interrupted``.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from harness.protocol import EpochMetrics, RunResult, RunSpec
from harness.train import RunObserver

STEP_BATCH = 10  # steps per progress message

Send = Callable[[tuple], None]
INTERRUPTED = ("the run was stopped (SIGTERM or Ctrl-C) before it finished; its last per-epoch checkpoint "
               "is kept: run the same command again to resume it")


class Reporter(RunObserver):
    """Runs with the run: forwards progress to the driver."""

    def __init__(self, send: Send, key: object) -> None:
        self.send, self.key, self.pending = send, key, 0

    def run_started(self, spec: RunSpec, total_steps: int) -> None:
        self.send(("started", self.key, total_steps))

    def run_resumed(self, spec: RunSpec, epochs_done: int, steps_done: int, notes: list[str]) -> None:
        self.send(("resumed", self.key, epochs_done, steps_done, notes))

    def step_done(self) -> None:
        self.pending += 1
        if self.pending >= STEP_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.send(("steps", self.key, self.pending))
            self.pending = 0

    def epoch_done(self, spec: RunSpec, metrics: EpochMetrics, best_fine_acc: float) -> None:
        self.flush()
        self.send(("epoch", self.key, metrics.model_dump_json(), best_fine_acc))


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


def execute(spec: RunSpec, *, run_dir: Path, submission: Path, sandbox_name: str, send: Send, key: object,
            data=None, data_dir: Path | None = None, threads: int = 0, handle_signals: bool = True) -> RunResult:
    """Carry out one run in this process and report it through ``send``; returns the result.

    ``data`` is ``(train, test)`` when the driver hands the splits over, else they are loaded
    from ``data_dir``. Never raises for a failed run; raises ``KeyboardInterrupt`` when stopped.
    """
    import torch

    from harness.evaluate import load_data
    from harness.sandbox import get_sandbox
    from harness.train import run_one

    if handle_signals:
        _stop_when_the_driver_dies()
        signal.signal(signal.SIGTERM, _stop_on_signal)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored as the driver is (nohup, cmd &)
            signal.signal(signal.SIGINT, _stop_on_signal)
    if threads:
        torch.set_num_threads(threads)
    send(("placed", key, f"process {os.getpid()} on {socket.gethostname()}"))
    reporter = Reporter(send, key)
    try:
        train, test = data if data is not None else load_data(spec.profile, data_dir)
        outcome = run_one(spec, submission=submission, train=train, test=test, run_dir=run_dir,
                          sandbox=get_sandbox(sandbox_name), observer=reporter)
        result = outcome.result
    except Exception as e:  # noqa: BLE001  (run_one catches run failures; this is setup)
        result = RunResult.failed(f"the run's process could not start training: {type(e).__name__}: {e}")
    reporter.flush()
    send(("finished", key, result.model_dump_json()))
    return result


def dispatch(event: tuple, spec: RunSpec, observer: RunObserver) -> RunResult | None:
    """Replay one event on ``observer``; returns the result for ``finished``."""
    kind = event[0]
    if kind == "placed":
        observer.run_placed(spec, event[2])
    elif kind == "started":
        observer.run_started(spec, event[2])
    elif kind == "resumed":
        observer.run_resumed(spec, event[2], event[3], event[4])
    elif kind == "steps":
        observer.steps_done_for(spec, event[2])
    elif kind == "epoch":
        observer.epoch_done(spec, EpochMetrics.model_validate_json(event[2]), event[3])
    elif kind == "finished":
        return RunResult.model_validate_json(event[2])
    return None  # "interrupted" is the executor's to handle
