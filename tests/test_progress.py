"""The overall progress display: run states, counts and an ETA that weighs runs by their
architecture's cost, measured with a fake clock."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from helpers import run_spec, tiny_profile
from harness.training.models import forward_macs
from harness.progress import EvaluationProgress
from harness.protocol import RunResult


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _progress(specs, parallel):
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    clock = Clock()
    return EvaluationProgress(console, specs, parallel=parallel, clock=clock), clock, out


def test_eta_weighs_architectures_and_divides_by_the_runs_at_once():
    profile = tiny_profile(epochs=2)
    r20, r56, later = run_spec(profile, "resnet20", 1), run_spec(profile, "resnet56", 1), run_spec(profile, "resnet20", 2)
    p, clock, out = _progress([r20, r56, later], parallel=2)
    c = forward_macs("resnet56") / forward_macs("resnet20")
    assert p.eta() is None and p.summary() == "0/3 runs ended, 0 running, 3 queued"
    with p:
        p.run_started(r20, 10)
        p.run_started(r56, 10)
        clock.t = 10.0
        p.steps_done(r20, 5)
        p.steps_done(r56, 2)
        # 20 run-seconds bought 0.5 * 2 epochs of resnet20 and 0.2 * 2 epochs of resnet56
        rate = 20 / (1 + 0.4 * c)
        assert p.seconds_per_work() == pytest.approx(rate)
        left = 0.5 * 2 + 0.8 * 2 * c + 1.0 * 2  # the queued run counts in full
        assert p.eta() == pytest.approx(left * rate / 2)
        assert p.summary() == "0/3 runs ended, 2 running, 1 queued"
        clock.t = 20.0
        p.steps_done(r20, 5)
        p.run_finished(r20, RunResult(status="ok", epochs_done=2, best_fine_acc=3.0, wall_seconds=20.0))
        p.run_started(later, 10)
        p.run_retrying(r56, 1, 2, "WorkerCrashedError: gone")
        assert p.summary() == "1/3 runs ended, 2 running, 0 queued"
    text = out.getvalue()
    assert "progress: 1/3 runs ended, 1 running, 1 queued; ETA 0:" in " ".join(text.split())
    assert "resnet56 seed 1: the task was lost (WorkerCrashedError: gone); retry 1 of 2" in " ".join(text.split())


def test_a_resumed_run_is_measured_only_on_the_steps_of_this_session():
    profile = tiny_profile(epochs=4)
    spec = run_spec(profile, "resnet20", 1)
    p, clock, out = _progress([spec], parallel=1)
    p.run_started(spec, 40)
    p.run_resumed(spec, 2, 20, [])
    clock.t = 5.0
    p.steps_done(spec, 10)  # 10 steps = 1 epoch in 5 s; the 20 replayed steps cost nothing here
    assert p.seconds_per_work() == pytest.approx(5.0)
    assert p.eta() == pytest.approx(5.0)
    assert "resuming after epoch 2/4" in out.getvalue()


def test_several_files_are_labelled_by_file():
    profile = tiny_profile()
    a = run_spec(profile, "resnet20", 1, submission="a.py")
    b = run_spec(profile, "resnet20", 1, submission="b.py")  # byte-identical to a.py: its own entry all the same
    p, _, _ = _progress([a, b], parallel=1)
    assert sorted(r.label for r in p.runs.values()) == ["a resnet20 seed 1", "b resnet20 seed 1"]
    c = a.model_copy(update={"kind": "baseline"})  # a baseline of the same name: another entry
    p, _, _ = _progress([a, c], parallel=1)
    assert sorted(r.label for r in p.runs.values()) == ["a (baseline) resnet20 seed 1", "a (submission) resnet20 seed 1"]
