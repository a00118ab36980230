"""Files written for the task's interface behave as in one process: a curriculum by absolute epoch
passes the interface check (the probe calls visit every epoch of the profile's run), and
in-place operations on the losses work (the worker's losses are non-leaf tensors, as in training)."""

from __future__ import annotations

import pytest
from helpers import SUBMISSIONS, harness

from harness.isolation.check import probe_epochs


def test_the_probe_visits_every_epoch_of_the_run_in_order():
    assert probe_epochs(200) == [(0, 3), (1, 3), (2, 3), (3, 3)] + [(e, 1) for e in range(4, 200)]
    assert probe_epochs(30)[-1] == (29, 1) and len(probe_epochs(30)) == 30
    assert probe_epochs(3) == [(0, 4), (1, 4), (2, 4)] and probe_epochs(1) == [(0, 12)]


@pytest.mark.slow  # starts the harness command
@pytest.mark.parametrize("name", ["wild/curriculum_coarse_first.py", "inplace_scale.py"])
def test_task_interface_files_pass_the_check(name, tmp_path):
    r = harness("check", SUBMISSIONS / name, "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{name.split('/')[-1]}: ok (208 probe calls" in " ".join(r.stdout.split())


@pytest.mark.slow  # starts the harness command
def test_a_curriculum_fails_where_the_run_never_reaches_the_fine_task(tmp_path):
    """The tiny profile's single epoch never gets past epoch 5: there the loss never uses fine_loss."""
    r = harness(
        "evaluate",
        SUBMISSIONS / "wild" / "curriculum_coarse_first.py",
        "--profile",
        "tiny",
        "--sandbox",
        "none",
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "never depends on fine_loss" in r.stdout + r.stderr
