"""What a loss did within its epochs: every N-th step's loss weights and the scalars a loss module
reports with ``scalars()``, through the real worker, bounded and checked as hostile input."""

from __future__ import annotations

import json

import pytest
from helpers import SUBMISSIONS, run_spec, tiny_profile

from harness.errors import SubmissionRejected
from harness.isolation.check import interface_check
from harness.isolation.messages import WorkerError, scalars_report
from harness.isolation.sandbox import get_sandbox
from harness.isolation.wire import MAX_SCALAR_NAME, MAX_SCALARS
from harness.results.rundir import RunDir
from harness.training import steplog
from harness.training.trainer import run_one

NONE = get_sandbox("none")


# the expected count worked out by hand: 400 points over the epochs, at most every step, at least one
@pytest.mark.parametrize(
    ("steps_per_epoch", "epochs", "per_epoch"),
    [(391, 200, 2), (391, 30, 13), (63, 3, 63), (3, 3, 3), (7, 1000, 1), (1, 1, 1)],
)
def test_a_run_logs_at_most_a_few_hundred_steps_at_the_same_positions_each_epoch(steps_per_epoch, epochs, per_epoch):
    positions = sorted(steplog.log_positions(steps_per_epoch, epochs))
    assert positions[-1] == steps_per_epoch - 1 and positions[0] >= 0  # the epoch's last batch, always
    assert len(positions) * epochs <= max(steplog.MAX_POINTS, epochs)  # one an epoch at the least
    if steps_per_epoch * epochs <= steplog.MAX_POINTS:
        assert positions == list(range(steps_per_epoch))  # a short run logs every step
    gaps = {b - a for a, b in zip([-1, *positions], positions)}
    assert max(gaps) - min(gaps) <= 1  # evenly spaced
    assert len(positions) == per_epoch


def _run(tmp_path, tiny_splits, submission, epochs=3):
    train, test = tiny_splits  # 192 images in batches of 64: 3 steps an epoch
    spec = run_spec(tiny_profile(epochs=epochs), submission=submission.name)
    outcome = run_one(spec, submission=submission, train=train, test=test, run_dir=tmp_path / "run", sandbox=NONE)
    return outcome, RunDir(tmp_path / "run")


@pytest.mark.slow  # over ~3 s
def test_the_weights_and_the_scalars_of_every_nth_step_are_recorded(tmp_path, tiny_splits, monkeypatch):
    monkeypatch.setattr(steplog, "MAX_POINTS", 3)  # one step an epoch: the last of each
    outcome, run = _run(tmp_path, tiny_splits, SUBMISSIONS / "reports_scalars.py")
    assert outcome.result.status == "ok", outcome.result.reason
    lines = run.read_steps()
    assert [(x["epoch"], x["step"]) for x in lines] == [(0, 2), (1, 5), (2, 8)]
    for x in lines:
        # dL/dcoarse is the gate; the module's own report of it arrives beside it
        assert x["weight_fine"] == 1.0 and x["weight_coarse"] == pytest.approx(x["scalars"]["gate"], rel=1e-6)
        assert set(x) == {
            "step",
            "epoch",
            "loss",
            "fine_loss",
            "coarse_loss",
            "weight_fine",
            "weight_coarse",
            "scalars",
        }
    assert [x["scalars"]["calls"] for x in lines] == [3.0, 6.0, 9.0] and lines[0]["scalars"]["warm"] == 1.0
    assert len({x["scalars"]["gate"] for x in lines}) == 3  # the gate is trained
    # every step of a short run, and a module without scalars() has none
    monkeypatch.setattr(steplog, "MAX_POINTS", 400)
    outcome, run = _run(tmp_path, tiny_splits, SUBMISSIONS / "ema_state.py", epochs=2)
    lines = run.read_steps()
    assert [x["step"] for x in lines] == list(range(6)) and not any("scalars" in x for x in lines)
    assert all(json.loads(json.dumps(x)) == x for x in lines)


def test_a_line_torn_by_a_crash_is_skipped_and_the_lines_around_it_kept(tmp_path):
    run = RunDir(tmp_path)
    run.append_steps([{"step": 0, "epoch": 0}, {"step": 1, "epoch": 0}])
    with open(run.steps, "a") as f:
        f.write('{"step": 2, "epoch": 0, "lo')  # the last line, cut short by a kill
    assert [x["step"] for x in run.read_steps()] == [0, 1]
    run.append_steps([{"step": 2, "epoch": 0}])  # an append ends the torn line first: it stays one bad line
    assert [x["step"] for x in run.read_steps()] == [0, 1, 2]
    run.restart_steps(2)  # a resume from step 2 keeps every step before it, and only whole lines
    assert [x["step"] for x in run.read_steps()] == [0, 1]
    assert [json.loads(line)["step"] for line in run.steps.read_text().splitlines()] == [0, 1]
    run.metrics.write_text('{"epoch": 0}\n{"epoch": 1}\n{"epo')
    assert run.read_metrics() == [{"epoch": 0}, {"epoch": 1}]
    run.metrics.write_text("[1, 2]\nnot json\n")  # nothing but damage: nothing
    assert run.read_metrics() == [] and RunDir(tmp_path / "absent").read_steps() == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("return {f'w{i}': 1.0 for i in range(MAX + 1)}", "at most 8 names"),
        ("return {'gate': 'high'}", "scalars()['gate'] is builtins.str 'high'"),
        ("return {'x' * (LONG + 1): 1.0}", "at most 40"),
        ("return {'gate': torch.ones(2)}", "one-element tensor"),
        ("return [1.0]", "got [1.0]"),
        ("raise KeyError('gate')", "scalars() raised KeyError"),
    ],
)
def test_a_scalars_method_that_breaks_its_contract_is_rejected_by_the_check(write_submission, body, why):
    path = write_submission(f"""
        import torch
        import torch.nn as nn

        MAX, LONG = {MAX_SCALARS}, {MAX_SCALAR_NAME}


        class MultiTaskLoss(nn.Module):
            def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
                return fine_loss + coarse_loss

            def scalars(self):
                {body}
    """)
    with pytest.raises(SubmissionRejected, match="interface check failed") as e:
        interface_check(path, sandbox=NONE)
    assert why in str(e.value) and "scalars()" in str(e.value), str(e.value)


def test_a_scalar_that_is_not_finite_is_left_out(write_submission, tmp_path):
    from harness.isolation.client import LossWorker, StepRequest
    from harness.protocol import OptimizerSettings

    path = write_submission("""
        import torch.nn as nn

        class MultiTaskLoss(nn.Module):
            def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
                return fine_loss + coarse_loss

            def scalars(self):
                return {"ok": 2, "nan": float("nan"), "inf": float("inf")}
    """)
    with LossWorker(path, sandbox=NONE, seed=0, optimizer=OptimizerSettings()) as w:
        w.start()
        w.step(StepRequest(0, 10, 0, 5, 0.1, fine_loss=4.0, coarse_loss=2.0))
        assert w.scalars() == {"ok": 2.0}


@pytest.mark.parametrize(
    "reply",
    [
        {},
        {"scalars": [1.0]},
        {"scalars": {f"w{i}": 1.0 for i in range(MAX_SCALARS + 1)}},
        {"scalars": {"x" * (MAX_SCALAR_NAME + 1): 1.0}},
        {"scalars": {"\x1b[31mred": 1.0}},
        {"scalars": {"gate": "0.3"}},
        {"scalars": {"gate": [0.3]}},
        {"scalars": {"gate": True}},
        {"scalars": {"gate": 2**60}},
    ],
)
def test_the_trainer_checks_the_scalars_a_worker_reports_as_hostile_input(reply):
    with pytest.raises(WorkerError, match="scalars"):
        scalars_report(reply)
    assert scalars_report({"scalars": {"gate": 0.3, "calls": 7}}) == {"gate": 0.3, "calls": 7.0}


def test_numpy_numbers_are_numbers(write_submission):
    """np.float64 is a float, np.float32 and a 0-d or one-element array hold one number: all are reported."""
    from harness.isolation.client import LossWorker, StepRequest
    from harness.protocol import OptimizerSettings

    path = write_submission("""
        import numpy as np
        import torch.nn as nn


        class MultiTaskLoss(nn.Module):
            def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
                return fine_loss + coarse_loss

            def scalars(self):
                return {"f64": np.float64(0.25), "f32": np.float32(0.5), "zero_d": np.array(2.0),
                        "one": np.array([3]), "count": np.int64(7), "flag": np.bool_(True)}
    """)
    interface_check(path, sandbox=NONE)
    with LossWorker(path, sandbox=NONE, seed=0, optimizer=OptimizerSettings()) as worker:
        worker.start()
        worker.step(StepRequest(0, 10, 0, 5, 0.1, 2.0, 1.0))
        assert worker.scalars() == {"f64": 0.25, "f32": 0.5, "zero_d": 2.0, "one": 3.0, "count": 7.0, "flag": 1.0}
