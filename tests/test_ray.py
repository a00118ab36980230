"""``--executor ray`` on a local Ray started for the evaluation (2 CPUs in CI): runs go to Ray
tasks, a lost task is retried from its checkpoint, and after ``--ray-retries`` the run fails with
the reason; only the driver writes the leaderboard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pandas as pd
import pytest
from helpers import REPO, SUBMISSIONS, LiveHarness, harness_env, run_spec, tiny_profile

if not os.environ.get("HARNESS_REQUIRE_RAY"):  # CI sets it: there a missing Ray fails the tests
    pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # Ray clusters and evaluations in subprocesses


def test_ray_executor_retries_a_lost_task_from_its_checkpoint_and_gives_up_after_the_bound(tmp_path):
    # two epochs of four steps; the loss sleeps in the second, so that a kill lands there (idle_steps.py)
    h = LiveHarness(
        "evaluate",
        SUBMISSIONS / "idle_steps.py",
        "--profile",
        "selftest",
        "--seed",
        "1",
        "--seed",
        "2",
        "--executor",
        "ray",
        "--jobs",
        "2",
        "--ray-retries",
        "1",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    pids: dict[int, int] = {}
    kills = {1: 0, 2: 0}
    try:
        while kills != {1: 1, 2: 2}:
            m = h.wait_for(r"resnet20 seed (\d)(?:: running in process (\d+)|  epoch (\d)/2)")
            seed = int(m.group(1))
            if m.group(2):
                pids[seed] = int(m.group(2))
                if seed == 2 and kills[2] == 1:  # seed 2's retry is lost too: no retry is left
                    os.kill(pids[2], signal.SIGKILL)
                    kills[2] = 2
            elif m.group(3) == "1" and kills[seed] == 0:  # after its first epoch's checkpoint
                os.kill(pids[seed], signal.SIGKILL)
                kills[seed] = 1
        rc, out = h.finish(timeout=600)
    finally:
        h.kill()
    flat = " ".join(out.split())
    assert rc == 1, out
    assert "a local Ray started for this evaluation" in flat
    assert flat.count("the task was lost (WorkerCrashedError") == 2, out
    assert "retry 1 of 1, resuming from its last checkpoint" in flat
    assert "resnet20 seed 1: resuming after epoch 1/2 from its checkpoint" in flat, out
    assert "resnet20 seed 2: the Ray task was lost 2 time(s), the last time with WorkerCrashedError" in flat, out
    assert "gave up after 1 retry (--ray-retries)" in flat
    df = pd.read_csv(tmp_path / "leaderboard-selftest.csv").set_index("seed")
    assert df.loc[1, "status"] == "ok" and df.loc[2, "status"] == "failed" and len(df) == 2
    run_dir = tmp_path / "runs" / df.loc[1, "run_id"]
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]  # the retry trained only the missing epoch
    assert json.loads((run_dir / "result.json").read_text())["device"] == "cpu"


def test_a_request_no_ray_node_can_meet_is_refused_instead_of_queued_forever(tmp_path):
    r = subprocess.run(
        [
            shutil.which("harness"),
            "evaluate",
            str(REPO / "submissions" / "example_loss.py"),
            "--profile",
            "tiny",
            "--executor",
            "ray",
            "--cpus-per-run",
            "512",
            "--device",
            "cpu",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=harness_env(),
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "each run asks for 512 CPUs but the largest Ray node has" in " ".join(r.stderr.split())


def test_a_task_on_a_node_with_another_harness_build_fails_with_the_reason(tmp_path):
    """The check at the top of the task, called directly (no Ray needed to reach it)."""
    from harness.executors.ray_tasks import _task, build_id

    spec = run_spec(tiny_profile())
    out = _task(spec.model_dump_json(), str(tmp_path), "loss.py", b"", None, "none", 1, None, "0:0", "9.9 (abc)")
    result = json.loads(out)
    assert result["status"] == "failed"
    assert result["reason"] == (
        f"this Ray node runs harness {build_id()}, the driver 9.9 (abc): install the same harness on every node"
    )


def test_deterministic_runs_carry_the_cublas_setting_into_ray_tasks(monkeypatch):
    """A task on a cluster joined with --ray-address does not inherit the driver's environment: the
    setting travels in the task's runtime_env. Checked in a real Ray task, with the driver's
    environment lacking it."""
    from pathlib import Path

    import ray

    from harness.executors import Job
    from harness.executors.ray_tasks import task_options
    from harness.results.rundir import RunDir

    def job(deterministic):
        spec = run_spec(tiny_profile()).model_copy(update={"deterministic": deterministic})
        return Job(spec=spec, submission=Path("x.py"), run_dir=RunDir(Path("r")))

    assert "runtime_env" not in task_options([job(False)], 1.0, 0.0)
    options = task_options([job(True)], 1.0, 0.0)
    assert options["max_retries"] == 0 and options["num_cpus"] == 1.0
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=1, include_dashboard=False, logging_level="warning", log_to_driver=False)
    try:
        read_env = ray.remote(lambda: os.environ.get("CUBLAS_WORKSPACE_CONFIG")).options(**options)
        assert ray.get(read_env.remote(), timeout=120) == ":4096:8"
    finally:
        ray.shutdown()
