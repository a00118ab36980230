"""``--executor ray`` on a local Ray started for the evaluation (2 CPUs in CI): runs go to Ray
tasks, a lost task is retried from its checkpoint, and after ``--ray-retries`` the run fails with
the reason; only the driver writes the leaderboard."""

from __future__ import annotations

import json
import os
import signal

import pandas as pd
import pytest

from conftest import REPO, LiveHarness

if not os.environ.get("HARNESS_REQUIRE_RAY"):  # CI sets it: there a missing Ray fails the tests
    pytest.importorskip("ray")

pytestmark = pytest.mark.ray


def test_ray_executor_retries_a_lost_task_from_its_checkpoint_and_gives_up_after_the_bound(tmp_path):
    h = LiveHarness("evaluate", REPO / "submissions" / "example_loss.py", "--profile", "smoke", "--arch", "resnet20",
                    "--seed", "1", "--seed", "2", "--executor", "ray", "--jobs", "2", "--ray-retries", "1", cwd=tmp_path)
    pids: dict[int, int] = {}
    kills = {1: 0, 2: 0}
    try:
        while kills != {1: 1, 2: 2}:
            m = h.wait_for(r"resnet20 seed (\d)(?:: running in process (\d+)|  epoch (\d)/3)")
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
    assert "resnet20 seed 1: resuming after epoch 1/3 from its checkpoint" in flat, out
    assert "resnet20 seed 2: the Ray task was lost 2 time(s), the last time with WorkerCrashedError" in flat, out
    assert "gave up after 1 retry (--ray-retries)" in flat
    df = pd.read_csv(tmp_path / "leaderboard-smoke.csv").set_index("seed")
    assert df.loc[1, "status"] == "ok" and df.loc[2, "status"] == "failed" and len(df) == 2
    run_dir = tmp_path / "runs" / df.loc[1, "run_id"]
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]  # the retry trained only the missing epochs
    assert json.loads((run_dir / "result.json").read_text())["device"] == "cpu"
