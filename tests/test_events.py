"""A run's events: one picklable dataclass each (they cross pipes and Ray), steps sent in batches,
and the driver's observer handed every progress event, never a run's end."""

from __future__ import annotations

import pickle

from helpers import run_spec, tiny_profile

from harness.events import (
    ONE_STEP,
    EpochDone,
    RunFinished,
    RunInterrupted,
    RunObserver,
    RunPlaced,
    RunResumed,
    RunRetrying,
    RunStarted,
    StepsDone,
)
from harness.executors.events import STEP_BATCH, Keyed, Reporter, deliver
from harness.protocol import EpochMetrics, RunResult

METRICS = EpochMetrics(
    epoch=0,
    lr=0.1,
    train_fine_loss=4.4,
    train_coarse_loss=2.3,
    train_combined_loss=6.7,
    weight_fine=1,
    weight_coarse=1,
    test_fine_loss=4.0,
    test_coarse_loss=2.0,
    test_fine_acc=8.8,
    test_coarse_acc=9.0,
    seconds=1.5,
)
EVENTS = [
    RunPlaced("process 1 on here"),
    RunStarted(40),
    RunResumed(2, 20, ("a note",)),
    StepsDone(7),
    EpochDone(METRICS, 8.8),
    RunRetrying(1, 2, "lost"),
    RunFinished(RunResult.failed("why")),
    RunInterrupted(),
]


class Seen(RunObserver):
    def __init__(self) -> None:
        self.events = []

    def on_event(self, spec, event):
        self.events.append((spec, event))


def test_every_event_crosses_a_process_boundary_unchanged():
    for event in EVENTS:
        message = Keyed("3:0", event)
        assert pickle.loads(pickle.dumps(message)) == message


def test_the_reporter_sends_steps_in_batches_and_flushes_them_before_any_other_event():
    spec = run_spec(tiny_profile(), "resnet20", 1)
    sent: list[Keyed] = []
    reporter = Reporter(sent.append, key=5)
    reporter.on_event(spec, RunStarted(40))
    for _ in range(STEP_BATCH + 3):
        reporter.on_event(spec, ONE_STEP)
    reporter.on_event(spec, EpochDone(METRICS, 8.8))
    assert sent == [
        Keyed(5, RunStarted(40)),
        Keyed(5, StepsDone(STEP_BATCH)),
        Keyed(5, StepsDone(3)),
        Keyed(5, EpochDone(METRICS, 8.8)),
    ]


def test_deliver_leaves_a_runs_end_to_the_executor():
    spec = run_spec(tiny_profile(), "resnet20", 1)
    seen = Seen()
    for event in EVENTS:
        deliver(Keyed(0, event), spec, seen)
    progress = [e for e in EVENTS if not isinstance(e, (RunFinished, RunInterrupted))]
    assert [event for _, event in seen.events] == progress
    assert all(s is spec for s, _ in seen.events)
