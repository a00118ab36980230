"""What a loss did is recorded: ``loss_state.json`` holds buffers and plain-number state as well as
parameters (bounded), so an EMA or an initial loss can be read after the run."""

from __future__ import annotations

import pytest
from helpers import SUBMISSIONS

from harness.isolation.client import LossWorker, StepRequest
from harness.isolation.sandbox import get_sandbox
from harness.protocol import OptimizerSettings


def test_state_reports_buffers_and_plain_numbers():
    with LossWorker(
        SUBMISSIONS / "ema_state.py", sandbox=get_sandbox("none"), seed=0, optimizer=OptimizerSettings()
    ) as w:
        w.start()
        w.step(StepRequest(0, 10, 0, 5, 0.1, fine_loss=4.0, coarse_loss=2.0))
        w.step(StepRequest(0, 10, 1, 5, 0.1, fine_loss=3.0, coarse_loss=1.0))
        state = w.state()
    assert len(state["w"]) == 2 and state["w"] != [0.0, 0.0]  # the parameters, trained
    assert state["buffer:ema"] == pytest.approx([0.9 * 0.4 + 0.3, 0.9 * 0.2 + 0.1], rel=1e-6)
    assert state["attr:calls"] == [2.0] and state["attr:first"] == [4.0, 2.0]
    assert "attr:flag" not in state and "attr:training" not in state
