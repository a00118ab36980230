"""The overall progress display: run states, counts and an ETA that weighs runs by their
architecture's cost, measured with a fake clock."""

from __future__ import annotations

import io
import re

import pytest
from helpers import run_spec, tiny_profile
from rich.console import Console

from harness.events import EpochDone, RunFinished, RunResumed, RunRetrying, RunStarted, StepsDone
from harness.protocol import RunResult
from harness.report.progress import EvaluationProgress
from harness.training.models import forward_macs


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
    r20, r56, later = (
        run_spec(profile, "resnet20", 1),
        run_spec(profile, "resnet56", 1),
        run_spec(profile, "resnet20", 2),
    )
    p, clock, out = _progress([r20, r56, later], parallel=2)
    c = forward_macs("resnet56") / forward_macs("resnet20")
    assert p.eta() is None and p.summary() == "0/3 runs ended, 0 running, 3 queued"
    with p:
        p.on_event(r20, RunStarted(10))
        p.on_event(r56, RunStarted(10))
        clock.t = 10.0
        p.on_event(r20, StepsDone(5))
        p.on_event(r56, StepsDone(2))
        # 20 run-seconds bought 0.5 * 2 epochs of resnet20 and 0.2 * 2 epochs of resnet56
        rate = 20 / (1 + 0.4 * c)
        assert p.seconds_per_work() == pytest.approx(rate)
        left = 0.5 * 2 + 0.8 * 2 * c + 1.0 * 2  # the queued run counts in full
        assert p.eta() == pytest.approx(left * rate / 2)
        assert p.summary() == "0/3 runs ended, 2 running, 1 queued"
        clock.t = 20.0
        p.on_event(r20, StepsDone(5))
        p.on_event(r20, RunFinished(RunResult(status="ok", epochs_done=2, best_fine_acc=3.0, wall_seconds=20.0)))
        p.on_event(later, RunStarted(10))
        p.on_event(r56, RunRetrying(1, 2, "WorkerCrashedError: gone"))
        assert p.summary() == "1/3 runs ended, 2 running, 0 queued"
    text = out.getvalue()
    assert "progress: 1/3 runs ended, 1 running, 1 queued; ETA 0:" in " ".join(text.split())
    assert "resnet56 seed 1: the task was lost (WorkerCrashedError: gone); retry 1 of 2" in " ".join(text.split())


def test_a_resumed_run_is_measured_only_on_the_steps_of_this_session():
    profile = tiny_profile(epochs=4)
    spec = run_spec(profile, "resnet20", 1)
    p, clock, out = _progress([spec], parallel=1)
    p.on_event(spec, RunStarted(40))
    p.on_event(spec, RunResumed(2, 20))
    clock.t = 5.0
    p.on_event(spec, StepsDone(10))  # 10 steps = 1 epoch in 5 s; the 20 replayed steps cost nothing here
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
    assert sorted(r.label for r in p.runs.values()) == [
        "a (baseline) resnet20 seed 1",
        "a (submission) resnet20 seed 1",
    ]


def test_on_a_terminal_each_epochs_numbers_are_drawn_even_when_the_run_ends_at_once():
    """The last epoch's numbers are replaced by the run's result as soon as it ends; they are drawn
    at the epoch's end, not left to the display's next tick (a tiny run ends within one)."""
    from harness.protocol import EpochMetrics

    spec = run_spec(tiny_profile(epochs=1), "resnet20", 42)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    p = EvaluationProgress(console, [spec])
    assert p.live
    m = EpochMetrics(
        epoch=0, lr=0.1, train_fine_loss=4.399, train_coarse_loss=2.281, train_combined_loss=6.68,
        weight_fine=1, weight_coarse=1, test_fine_loss=4.0, test_coarse_loss=2.0, test_fine_acc=8.8,
        test_coarse_acc=20.0, seconds=1.0,
    )  # fmt: skip
    with p:
        p.on_event(spec, RunStarted(4))
        p.on_event(spec, StepsDone(4))
        p.on_event(spec, EpochDone(m, 8.8))
        p.on_event(spec, RunFinished(RunResult(status="ok", epochs_done=1, best_fine_acc=8.8, wall_seconds=1.0)))
    text = out.getvalue()
    assert "loss 4.399/2.281  test fine  8.80%  best  8.80%" in text, text
    last = text[text.rindex("resnet20 seed 42") :]  # the frame left on the screen: the result
    assert re.match(r"resnet20 seed 42 .*ok +best 8\.80%", last) and "loss" not in last, last


# --- at 80 columns ---------------------------------------------------------------------------------


def _frame(p, width: int, height: int = 50) -> list[str]:
    """The live display as it is drawn ``width`` columns wide."""
    out = Console(file=io.StringIO(), width=width, height=height, force_terminal=True, color_system=None)
    out.print(p.progress.get_renderable())
    return out.file.getvalue().splitlines()


def _busy(names=("a_rather_long_submission_name.py", "b.py")):
    """Two files x two architectures x three seeds: two runs going, one ended, the others queued."""
    from harness.protocol import EpochMetrics

    profile = tiny_profile(epochs=3)
    specs = [
        run_spec(profile, a, s, submission=n) for n in names for a in ("resnet20", "resnet56") for s in (42, 123, 456)
    ]
    p, clock, _ = _progress(specs, parallel=2)
    for spec in specs[:3]:
        p.on_event(spec, RunStarted(30))
    clock.t = 12.0
    p.on_event(specs[0], StepsDone(10))
    m = EpochMetrics(
        epoch=0,
        lr=0.1,
        train_fine_loss=4.399,
        train_coarse_loss=2.281,
        train_combined_loss=6.68,
        weight_fine=1,
        weight_coarse=1,
        test_fine_loss=4.0,
        test_coarse_loss=2.0,
        test_fine_acc=88.8,
        test_coarse_acc=90.0,
        seconds=12.0,
    )
    p.on_event(specs[0], EpochDone(m, 88.8))
    p.on_event(specs[2], RunFinished(RunResult(status="ok", epochs_done=3, best_fine_acc=45.4, wall_seconds=39.0)))
    return p


def test_at_80_columns_each_run_stacks_its_numbers_under_its_name_and_nothing_is_cut():
    lines = _frame(_busy(), 80)
    assert all(len(line) <= 80 for line in lines) and not any("…" in line for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    # the name, the bar and the state on one line; the numbers whole under it
    assert re.search(r"^a_rather_long_submission_name resnet20 seed 42 +━+ +epoch 1/3$", text, re.M), text
    assert re.search(r"^  loss 4\.399/2\.281  test fine 88\.80%  best 88\.80%  0:00:12  ETA \d:\d\d:\d\d$", text, re.M)
    assert re.search(r"^  1/12 runs ended, 2 running, 9 queued  0:00:12  ETA \d:\d\d:\d\d$", text, re.M), text
    assert re.search(r"^a_rather_long_submission_name resnet20 seed 456 .* ok$", text, re.M)
    assert re.search(r"^b resnet56 seed 456 +queued$", text, re.M)
    # narrower still, lines break between fields, never inside one
    narrow = _frame(_busy(), 50)
    i = narrow.index("a_rather_long_submission_name resnet20 seed 42")
    assert narrow[i : i + 3] == [
        "a_rather_long_submission_name resnet20 seed 42",
        "  epoch 1/3  loss 4.399/2.281  test fine 88.80%",
        "  best 88.80%  0:00:12  ETA 0:01:12",
    ], "\n".join(narrow)
    # a name longer than the line wraps whole; its state goes under it
    long = "x" * 90 + ".py"
    lines = _frame(_busy((long, "b.py")), 80)
    assert "".join(lines[2:4]) == "x" * 90 + " resnet20 seed 42" and lines[4].startswith("  epoch 1/3  loss 4.399")


def test_a_wide_terminal_keeps_one_line_per_run_and_drops_the_bar_before_the_numbers():
    wide = _frame(_busy(), 200)
    assert len(wide) == 13 and "━" in wide[1] and "loss 4.399/2.281" in wide[1]
    mid = _frame(_busy(), 140)
    assert len(mid) == 13 and "━" not in "".join(mid) and "test fine 88.80%  best 88.80% 0:00:12" in mid[1], mid


def test_runs_queued_then_ended_fold_into_a_line_when_the_terminal_is_short():
    lines = _frame(_busy(), 80, height=12)
    assert lines[-1] == "9 more runs queued" and not any(x.endswith(" queued") for x in lines[:-1]), lines
    assert len(lines) <= 10
    lines = _frame(_busy(), 80, height=8)
    assert lines[-2:] == ["1 run ended (1 ok, 0 failed): the results table follows at the end", "9 more runs queued"]
    assert len(lines) == 8  # the overall and the two running runs (two lines each) stay
