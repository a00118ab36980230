"""The loss worker and the interface check, through the same code the CLI uses."""

import pytest
from helpers import BASELINES, REDTEAM, SUBMISSIONS, run_spec, tiny_profile

from harness.isolation.check import SubmissionRejected, interface_check, static_check
from harness.isolation.client import LossWorker, StepRequest
from harness.isolation.sandbox import get_sandbox
from harness.protocol import OptimizerSettings
from harness.training.trainer import run_one

NONE = get_sandbox("none")


@pytest.mark.parametrize(
    "path, caps",
    [
        (BASELINES / "uncertainty.py", ()),
        (SUBMISSIONS / "dwa_state.py", ()),
        (SUBMISSIONS / "gramian_mgda.py", ("gramian",)),
        (SUBMISSIONS / "capabilities.py", ("step", "steps_per_epoch", "batch_fine_acc", "batch_coarse_acc")),
        (SUBMISSIONS / "prints_garbage.py", ()),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else None,
)
def test_interface_check_accepts(path, caps):
    report = interface_check(path, sandbox=NONE)
    assert report.capabilities == caps
    assert report.probes == 4 * 3 + 196  # the full protocol's epochs: the first four thrice, the others once


@pytest.mark.parametrize(
    "name, message",
    [
        ("vector_return.py", "0-d tensor (a scalar), got shape (2,)"),
        ("float_return.py", "0-d floating torch.Tensor, got builtins.float"),
        ("detached_return.py", "does not depend on fine_loss or coarse_loss"),
        ("coarse_only.py", "never depends on fine_loss"),
        ("raises_in_init.py", "RuntimeError: cannot build this loss"),
        ("head_loss_wrong_arity.py", "MultiTaskLoss.head_loss must accept (fine_loss, coarse_loss)"),
        ("head_loss_float.py", "head_loss must return a 0-d floating torch.Tensor, got builtins.float"),
    ],
)
def test_interface_check_rejects_with_a_clear_message(name, message):
    with pytest.raises(SubmissionRejected) as e:
        interface_check(SUBMISSIONS / name, sandbox=NONE)
    assert message in str(e.value)


def test_static_check_rejects_a_file_without_the_class(tmp_path):
    with pytest.raises(SubmissionRejected, match="no top-level `class MultiTaskLoss"):
        static_check(SUBMISSIONS / "no_class.py")
    bad = tmp_path / "bad.py"
    bad.write_text("class MultiTaskLoss(nn.Module):\n    def forward(self:\n")
    with pytest.raises(SubmissionRejected, match=r"bad.py:2: syntax error"):
        static_check(bad)


def test_uncertainty_weights_and_sgd_match_hand_computation():
    import math

    with LossWorker(BASELINES / "uncertainty.py", sandbox=NONE, seed=0, optimizer=OptimizerSettings()) as w:
        w.start()
        r = w.step(StepRequest(0, 10, 0, 5, 0.1, fine_loss=4.0, coarse_loss=2.0))
        assert (r.loss, r.w_fine, r.w_coarse) == (6.0, 1.0, 1.0)  # log_vars start at 0
        assert (r.h_fine, r.h_coarse, r.uses_fine, r.uses_coarse) == (1.0, 1.0, True, True)
        # dL/ds = 1 - exp(-s) L; SGD lr 0.1: s_fine = 0 - 0.1 * (1 - 4) = 0.3, s_coarse = 0.1
        s_fine, s_coarse = w.state()["log_vars"]
        assert s_fine == pytest.approx(0.3, rel=1e-6) and s_coarse == pytest.approx(0.1, rel=1e-6)
        r = w.step(StepRequest(0, 10, 1, 5, 0.1, fine_loss=4.0, coarse_loss=2.0))
        assert r.w_fine == pytest.approx(math.exp(-0.3), rel=1e-6)
        s_fine_2 = w.state()["log_vars"][0]
    # second step: momentum 0.9 and weight decay 5e-4
    grad = 1 - math.exp(-0.3) * 4 + 5e-4 * 0.3
    assert s_fine_2 == pytest.approx(0.3 - 0.1 * (0.9 * -3 + grad), rel=1e-6)


def test_the_reply_says_which_losses_the_loss_uses():
    """A loss that leaves a task out reports no dependency on it (not a zero derivative)."""
    with LossWorker(SUBMISSIONS / "warmup_ignores_coarse.py", sandbox=NONE, seed=0, optimizer=OptimizerSettings()) as w:
        assert w.start().head_loss is False
        r = w.step(StepRequest(0, 10, 0, 5, 0.1, fine_loss=4.0, coarse_loss=2.0))
        assert (r.loss, r.w_fine, r.w_coarse, r.uses_fine, r.uses_coarse) == (4.0, 1.0, 0.0, True, False)
        assert (r.h_fine, r.h_coarse, r.head_uses_fine, r.head_uses_coarse) == (1.0, 0.0, True, False)
        r = w.step(StepRequest(1, 10, 5, 5, 0.1, fine_loss=4.0, coarse_loss=2.0))
        assert (r.w_coarse, r.uses_coarse, r.head_uses_coarse) == (1.0, True, True)


def test_an_attribute_named_head_loss_is_not_a_head_loss():
    with LossWorker(SUBMISSIONS / "head_loss_attribute.py", sandbox=NONE, seed=0, optimizer=OptimizerSettings()) as w:
        assert w.start().head_loss is False
        assert w.step(StepRequest(0, 10, 0, 5, 0.1, fine_loss=4.0, coarse_loss=2.0)).loss == 6.0


def test_aliased_gradients_are_scaled_once():
    """autograd may return one tensor for two parameters (``p + q``); the per-task path scales
    gradients in place, so each must be its own: compared with autograd of the weighted sum."""
    import torch

    from harness.training.gradients import _set_combined_gradients, _task_gradients

    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.full((3,), 2.0))
    x = torch.tensor([1.0, -2.0, 3.0])
    fine, coarse = ((p + q) * x).sum(), ((p + q) * x * x).sum()
    g_fine, g_coarse = _task_gradients([p, q], fine, coarse, ([True, True], [True, True]))
    _set_combined_gradients([p, q], g_fine, g_coarse, 0.7, 1.9, True, True)
    want = 0.7 * x + 1.9 * x * x
    assert torch.allclose(p.grad, want) and torch.allclose(q.grad, want)


@pytest.mark.slow
def test_head_loss_gives_the_heads_their_own_weights():
    """PCGrad weights the shared gradients by the surgery; its heads keep their own task's gradient.
    DB-MTL's heads get the gradient of log(L_k + 1e-8): 1 / (L_k + 1e-8)."""
    conflicting = dict(gramian=(1.0, -0.5, 2.0))
    with LossWorker(BASELINES / "pcgrad.py", sandbox=NONE, seed=0, optimizer=OptimizerSettings()) as w:
        assert w.start().head_loss is True
        r = w.step(StepRequest(0, 10, 0, 5, 0.1, fine_loss=4.0, coarse_loss=2.0, **conflicting))
    assert (r.w_fine, r.w_coarse) == (pytest.approx(1.5), pytest.approx(1.25))  # 1 - G01/G00, 1 - G01/G11
    assert (r.h_fine, r.h_coarse, r.head_uses_fine, r.head_uses_coarse) == (1.0, 1.0, True, True)
    with LossWorker(BASELINES / "db_mtl.py", sandbox=NONE, seed=0, optimizer=OptimizerSettings()) as w:
        w.start()
        r = w.step(StepRequest(0, 10, 0, 5, 0.1, fine_loss=4.0, coarse_loss=2.0, **conflicting))
    assert (r.h_fine, r.h_coarse) == (pytest.approx(1 / 4.0), pytest.approx(1 / 2.0))
    assert r.w_fine != pytest.approx(r.h_fine)  # the shared weights are balanced, the heads' are not


@pytest.mark.parametrize(
    "values, flags, head_loss, message",
    [
        (
            (1.0, 1.0, 0.5, 1.0, 0.5),
            0b1101,
            True,
            "a derivative for a loss it does not use",
        ),  # w_coarse without USES_COARSE
        (
            (1.0, 1.0, 1.0, 1.0, 1.0),
            0b1011,
            True,
            "a derivative for a loss it does not use",
        ),  # h_fine, fine "unused" by H
        ((1.0, 1.0, 1.0, 1.0, 2.0), 0b1111, False, "a head loss it did not announce"),
        ((1.0, 1.0, 1.0, 1.0, 1.0), 0b1111, False, None),
        ((1.0, 1.0, 1.0, 1.0, 1.0), 0b10000, False, "unknown flags"),
        ((float("nan"), 1.0, 1.0, 1.0, 1.0), 0b1111, False, "non-finite"),
    ],
)
def test_a_result_record_that_contradicts_itself_is_a_protocol_violation(values, flags, head_loss, message):
    from harness.isolation import wire
    from harness.isolation.client import StepReply, WorkerError

    payload = wire.RESULT_RECORD.pack(*values, flags)
    if message is None:
        assert StepReply.unpack(payload, head_loss=head_loss).loss == 1.0
        return
    with pytest.raises(WorkerError, match=message) as e:
        StepReply.unpack(payload, head_loss=head_loss)
    assert e.value.stage == "protocol"


def _run(name, tmp_path, directory=SUBMISSIONS, **profile_overrides):
    profile = tiny_profile(**profile_overrides)
    train, test = _run.splits
    return run_one(
        run_spec(profile, submission=name),
        submission=directory / name,
        train=train,
        test=test,
        run_dir=tmp_path / "run",
        sandbox=NONE,
    )


@pytest.fixture(autouse=True)
def _splits(tiny_splits):
    _run.splits = tiny_splits


@pytest.mark.slow
def test_exception_mid_run_fails_with_the_submissions_traceback(tmp_path):
    profile = tiny_profile()
    train, test = _run.splits
    ok = run_one(
        run_spec(profile, seed=42),
        submission=SUBMISSIONS / "raises_later.py",
        train=train,
        test=test,
        run_dir=tmp_path / "run42",
        sandbox=NONE,
    )
    assert ok.result.status == "ok"  # this submission fails only with seed 1
    outcome = run_one(
        run_spec(profile, seed=1),
        submission=SUBMISSIONS / "raises_later.py",
        train=train,
        test=test,
        run_dir=tmp_path / "run1",
        sandbox=NONE,
    )
    assert outcome.result.status == "failed"
    reason = outcome.result.reason
    assert "epoch 0, step 2" in reason and "ZeroDivisionError: deliberate failure" in reason
    assert "raises_later.py" in reason and "raise ZeroDivisionError" in reason  # the submission's own frame
    failure = (tmp_path / "run1" / "failure.txt").read_text()
    assert "ZeroDivisionError" in failure and not (tmp_path / "run1" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_worker_that_stops_answering_is_killed_and_the_run_fails(tmp_path):
    outcome = _run("hangs_later.py", tmp_path, worker_call_timeout_s=2.0)
    assert outcome.result.status == "failed"
    assert "did not answer within 2 s" in outcome.result.reason and "epoch 0, step 2" in outcome.result.reason


@pytest.mark.slow
def test_a_worker_that_stops_answering_is_killed_when_the_limit_ends():
    """No CLOSE frame and no grace for a worker that did not answer in time: a hung one could not read
    it and would keep a core busy through the wait (a graceful close waits up to 2 s)."""
    import time

    from harness.isolation.client import WorkerError

    steps = [StepRequest(0, 1, i, 4, 0.1, fine_loss=4.0, coarse_loss=2.0) for i in range(3)]
    with LossWorker(
        SUBMISSIONS / "hangs_later.py", sandbox=NONE, seed=0, optimizer=OptimizerSettings(), call_timeout=1.0
    ) as w:
        w.start()
        w.step(steps[0]), w.step(steps[1])  # the third call spins for ever
        proc = w.proc
        started = time.monotonic()
        with pytest.raises(WorkerError, match="did not answer within 1 s"):
            w.step(steps[2])
        elapsed = time.monotonic() - started
    assert proc is not None and proc.poll() is not None
    assert elapsed < 2.5, elapsed  # the 1 s limit, then the kill


@pytest.mark.slow
def test_worker_exit_mid_run_fails_the_run(tmp_path):
    outcome = _run("exit_mid_run.py", tmp_path, directory=REDTEAM)
    assert outcome.result.status == "failed"
    assert "exited" in outcome.result.reason and "exit code 3" in outcome.result.reason


@pytest.mark.slow
def test_nan_after_the_first_epoch_fails_the_run(tmp_path):
    outcome = _run("nan_after_first_epoch.py", tmp_path, epochs=5)
    assert outcome.result.status == "failed"
    assert "epoch 1, step 3" in outcome.result.reason and "non-finite loss (nan)" in outcome.result.reason
    assert outcome.result.epochs_done == 1


@pytest.mark.slow
def test_printing_garbage_does_not_corrupt_the_protocol(tmp_path):
    outcome = _run("prints_garbage.py", tmp_path)
    assert outcome.result.status == "ok"
    assert b"fake frame" in (tmp_path / "run" / "worker.log").read_bytes()


@pytest.mark.slow
def test_optional_inputs_reach_forward(tmp_path):
    outcome = _run("capabilities.py", tmp_path, epochs=2)
    assert outcome.result.status == "ok", outcome.result.reason
    # weight_coarse = 0.5 + 0.5 * batch coarse accuracy: strictly between 0.5 and 1
    assert all(0.5 <= m.weight_coarse <= 1.0 for m in outcome.history)


@pytest.mark.slow
def test_python_state_persists_across_epochs(tmp_path):
    outcome = _run("dwa_state.py", tmp_path, epochs=3)
    assert outcome.result.status == "ok", outcome.result.reason
    weights = [(m.weight_fine, m.weight_coarse) for m in outcome.history]
    assert weights[0] == weights[1] == (1.0, 1.0)  # uniform for the first two epochs
    w_fine, w_coarse = weights[2]  # then from the loss ratios of epochs 0 and 1
    assert w_fine != 1.0 and w_fine + w_coarse == pytest.approx(2.0)


def test_forged_hostile_frames_fail_cleanly():
    with pytest.raises(SubmissionRejected, match="malformed error report"):
        interface_check(SUBMISSIONS / "forges_frames.py", sandbox=NONE)


@pytest.mark.slow
def test_per_run_time_budget_stops_a_slow_submission(tmp_path):
    outcome = _run("slow_calls.py", tmp_path, worker_run_budget_s=1.0)
    assert outcome.result.status == "failed"
    assert "time budget of 1 s" in outcome.result.reason and "step 1" in outcome.result.reason


@pytest.mark.parametrize("seed, where", [(42, "forward raised RuntimeError"), (43, "exit code 3")])
@pytest.mark.slow
def test_escape_sequences_from_the_worker_never_reach_the_reason_or_failure_txt(seed, where, tmp_path, monkeypatch):
    """Step 1 raises with escape codes in the message; with another seed the same file is made to
    crash at step 2 instead, so the reason quotes the worker log's tail."""
    import re

    path = REDTEAM / "escape_codes.py"
    if seed == 43:  # skip the raise: the crash comes first
        path = tmp_path / "escape_crash.py"
        path.write_text((REDTEAM / "escape_codes.py").read_text().replace("step == 1", "step == -1"))
    train, test = _run.splits
    outcome = run_one(
        run_spec(tiny_profile(), seed=seed),
        submission=path,
        train=train,
        test=test,
        run_dir=tmp_path / "run",
        sandbox=NONE,
    )
    assert outcome.result.status == "failed" and where in outcome.result.reason
    failure = (tmp_path / "run" / "failure.txt").read_text()
    for text in (outcome.result.reason, failure):
        assert "hidden" in text and "ok" in text  # the words stay readable
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text), repr(text)
