"""Attacks driven at the protocol level, past the static check: the real worker script is replaced
by a hostile one (as code that reached ``os`` could behave), in every backend, and the trainer's
side (``LossWorker``, ``run_one``) must end the run with a clear failure within its time limits.

* ``stall_worker.py`` stops reading and sends valid replies before it is asked, so that the
  trainer's writes fill the (shrunk) pipe: a reply ahead of its request is a protocol violation.
* ``deaf_worker.py`` never reads again: a write that cannot complete times out, and closing the
  worker (as on Ctrl-C) does not block on the CLOSE frame.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import pytest
from helpers import BASELINES, require_sandbox, run_spec, tiny_profile

from harness.isolation.client import LossWorker, StepRequest, WorkerError
from harness.protocol import OptimizerSettings
from harness.training.trainer import run_one

pytestmark = pytest.mark.slow  # starts hostile workers in every sandbox backend

HERE = Path(__file__).resolve().parent / "protocol"
BACKENDS = ["none", "bwrap", "docker"]


def hostile(backend: str, script: str, monkeypatch) -> object:
    """The backend, launching ``script`` where it would launch the real worker (every backend runs the
    staged copy of the package's ``WORKER_SCRIPT``)."""
    sandbox = require_sandbox(backend)
    monkeypatch.setattr(importlib.import_module("harness.isolation.sandbox"), "WORKER_SCRIPT", HERE / script)
    return sandbox


@pytest.mark.parametrize("backend", BACKENDS)
def test_replies_ahead_of_their_requests_fail_the_run_within_the_call_limit(
    backend, monkeypatch, tiny_splits, tmp_path
):
    sandbox = hostile(backend, "stall_worker.py", monkeypatch)
    train, test = tiny_splits
    spec = run_spec(tiny_profile(worker_call_timeout_s=5.0), submission="equal_weighting.py")
    started = time.monotonic()
    outcome = run_one(
        spec,
        submission=BASELINES / "equal_weighting.py",
        train=train,
        test=test,
        run_dir=tmp_path / "run",
        sandbox=sandbox,
    )
    elapsed = time.monotonic() - started
    assert outcome.result.status == "failed"
    assert "sent data before it was asked" in outcome.result.reason, outcome.result.reason
    assert "epoch 0, step" in outcome.result.reason
    assert elapsed < 60, elapsed  # start-up plus at most a call limit, never a hang


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_worker_that_stops_reading_cannot_block_a_write_or_the_close(backend, monkeypatch):
    sandbox = hostile(backend, "deaf_worker.py", monkeypatch)
    worker = LossWorker(
        BASELINES / "equal_weighting.py",
        sandbox=sandbox,
        seed=0,
        optimizer=OptimizerSettings(),
        start_timeout=60,
        call_timeout=2.0,
    )
    try:
        worker.start()
        started = time.monotonic()
        with pytest.raises(WorkerError, match="did not read its input within 2 s") as e:
            # far more than any pipe, socket and engine buffer holds
            worker._send(b"\0" * (64 << 20), 2.0, "testing")
        assert e.value.stage == "timeout" and time.monotonic() - started < 10
    finally:
        started = time.monotonic()
        worker.close()
        assert time.monotonic() - started < 15


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_worker_that_stops_reading_fails_the_step_within_the_call_limit(backend, monkeypatch):
    sandbox = hostile(backend, "deaf_worker.py", monkeypatch)
    with LossWorker(
        BASELINES / "equal_weighting.py",
        sandbox=sandbox,
        seed=0,
        optimizer=OptimizerSettings(),
        start_timeout=60,
        call_timeout=2.0,
    ) as worker:
        worker.start()
        started = time.monotonic()
        with pytest.raises(WorkerError) as e:
            worker.step(StepRequest(0, 10, 0, 5, 0.1, 4.0, 2.0))
        assert e.value.stage == "timeout" and time.monotonic() - started < 10


def test_docker_keeps_no_engine_log_of_what_the_worker_prints(tmp_path):
    """The engine's default json-file log has no size limit: a print loop would fill the host's disk
    under /var/lib/docker. The worker's container logs nothing; the run's worker.log is capped."""
    sandbox = require_sandbox("docker")
    log = tmp_path / "worker.log"
    with LossWorker(
        Path(__file__).resolve().parent / "print_flood.py",
        sandbox=sandbox,
        seed=0,
        optimizer=OptimizerSettings(),
        log_path=log,
        start_timeout=120,
    ) as worker:
        worker.start()
        container = worker.proc.container
        container.reload()
        assert container.attrs["HostConfig"]["LogConfig"]["Type"] == "none"
        log_path = container.attrs.get("LogPath") or ""
        assert not log_path or not Path(log_path).exists() or Path(log_path).stat().st_size == 0
        reply = worker.step(StepRequest(0, 10, 0, 5, 0.1, 4.0, 2.0))
        assert reply.loss == 6.0
    assert 1 << 20 <= log.stat().st_size < (1 << 20) + 4096
    assert "more bytes of worker output were dropped" in log.read_text()[-200:]
