"""Loss modules written the way public repositories write them, checked as a user
types it. Each message says what to change; the variadic ``forward(self, *losses)`` is accepted and
gets the two losses only."""

from __future__ import annotations

import re

import pytest
from helpers import SUBMISSIONS, harness

WILD = SUBMISSIONS / "wild"


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "required_argument.py",
            "MultiTaskLoss is built with no arguments, but its __init__ requires `n_losses`: give it a default",
        ),
        (
            "other_class_name.py",
            "it defines `UncertaintyLoss` (line 5): rename the one the harness should train to MultiTaskLoss",
        ),
        ("tuple_return.py", "got builtins.tuple: return only the combined loss (not a tuple such as `total, l1, l2`)"),
    ],
)
@pytest.mark.slow
def test_code_from_the_wild_is_told_what_to_change(name, expected, tmp_path):
    r = harness("check", WILD / name, "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    flat = " ".join((r.stdout + r.stderr).split())
    assert expected in flat, flat
    assert "self.module = cls()" not in flat  # not the harness's own traceback


@pytest.mark.slow
def test_a_float_return_says_not_to_call_item(tmp_path):
    r = harness("check", SUBMISSIONS / "float_return.py", "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 2 and "do not call .item() or float() on the loss" in " ".join(r.stderr.split())


@pytest.mark.slow
def test_a_variadic_forward_gets_the_two_losses_only(tmp_path):
    r = harness("check", WILD / "variadic_forward.py", "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = harness(
        "evaluate",
        WILD / "variadic_forward.py",
        "--profile",
        "tiny",
        "--sandbox",
        "none",
        "--leaderboard",
        tmp_path / "lb.csv",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr  # it raises if the epoch arrives among the losses


@pytest.mark.slow
def test_a_forward_that_names_the_epoch_still_gets_it(tmp_path):
    r = harness("check", WILD / "epoch_then_rest.py", "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_directory_is_not_a_submission(tmp_path):
    r = harness("check", SUBMISSIONS / "wild", cwd=tmp_path)
    assert r.returncode == 2 and "is a directory; pass the submission file(s) in it" in r.stderr, r.stderr


@pytest.mark.slow
def test_an_optional_input_that_would_never_arrive_is_warned_about(tmp_path):
    """``gramian=None`` as a positional parameter: the file trains, but not as it was meant to; the check
    says so and how to write it. Its ``**kwargs`` is never read, so nothing is lost there and nothing is
    said about it (a read from ``**kwargs`` is delivered or refused: tests/test_ports.py)."""
    r = harness("check", WILD / "optional_input_with_default.py", "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    flat = " ".join(r.stdout.split())
    assert "extra inputs: none" in flat
    assert (
        "warning: forward's parameter `gramian` is positional, so the harness never passes it (it keeps its "
        "default): make it keyword-only, after a `*`"
    ) in flat, flat
    assert "kwargs" not in flat
    r = harness("check", SUBMISSIONS / "gramian_mgda.py", "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 0 and "forward's parameter" not in r.stdout and "**" not in r.stdout  # keyword-only


@pytest.mark.slow
def test_check_projects_the_worker_time_of_a_full_run(tmp_path):
    """A slow forward passes every check, yet the full protocol's 78,200 calls (391 steps x 200
    epochs) would exhaust the run's 3,600 s worker budget: the check measures its probe calls and says
    in which epoch the run would fail. A fast one is told its (small) share."""
    r = harness("check", WILD / "slow_forward.py", "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    flat = " ".join(r.stdout.split())
    found = re.search(
        r"worker time: ([\d.]+) ms per call .*? a full run makes 78,200 calls: ~([\d,]+) s of its "
        r"3,600 s budget\. It would run out in epoch (\d+) and the run would fail",
        flat,
    )
    assert found, flat
    ms, total, epoch = float(found[1]), int(found[2].replace(",", "")), int(found[3])
    assert abs(total - ms / 1e3 * 78_200) <= 0.01 * total + 1
    assert epoch == int(3600 / (ms / 1e3) / 391) + 1 and 1 <= epoch <= 200
    r = harness("check", SUBMISSIONS / "dwa_state.py", "--sandbox", "none", cwd=tmp_path)
    flat = " ".join(r.stdout.split())
    assert r.returncode == 0 and "a full run makes 78,200 calls" in flat and "run out" not in flat


@pytest.mark.parametrize("sandbox", ["none", "auto"])
@pytest.mark.slow
def test_tracebacks_name_the_file_as_the_user_gave_it(sandbox, tmp_path):
    """Relative or absolute, sandboxed or not: the traceback names the user's file once, never the
    in-sandbox path or the copy under runs/."""
    for given in (SUBMISSIONS / "raises_in_init.py", "raises_in_init.py"):
        r = harness("check", given, "--sandbox", sandbox, cwd=SUBMISSIONS)
        assert r.returncode == 2, r.stdout + r.stderr
        assert f'File "{given}", line 7, in __init__' in r.stderr and "/sandbox/" not in r.stderr, r.stderr
        assert f"{given}{given}" not in r.stderr and f"/{SUBMISSIONS}" not in r.stderr


@pytest.mark.slow
def test_a_known_input_in_one_of_the_first_four_positions_is_warned_about(tmp_path):
    path = tmp_path / "step_as_epoch.py"
    path.write_text(
        "import torch.nn as nn\n\n\nclass MultiTaskLoss(nn.Module):\n"
        "    def forward(self, fine_loss, coarse_loss, step, total_epochs):\n"
        "        return fine_loss + coarse_loss\n"
    )
    r = harness("check", path, "--sandbox", "none", cwd=tmp_path)
    flat = " ".join(r.stdout.split())
    assert r.returncode == 0 and "forward's parameter `step` is in position 3, which receives epoch" in flat, flat
