"""Issue 17, item 1: loss modules written the way public repositories write them, checked as a user
types it. Each message says what to change; the variadic ``forward(self, *losses)`` is accepted and
gets the two losses only."""

from __future__ import annotations

import pytest

from conftest import SUBMISSIONS
from test_cli import harness

WILD = SUBMISSIONS / "wild"


@pytest.mark.parametrize("name, expected", [
    ("required_argument.py", "MultiTaskLoss is built with no arguments, but its __init__ requires `n_losses`: "
                             "give it a default"),
    ("other_class_name.py", "it defines `UncertaintyLoss` (line 5): rename the one the harness should train to "
                            "MultiTaskLoss"),
    ("tuple_return.py", "got builtins.tuple: return only the combined loss (not a tuple such as `total, l1, l2`)"),
])
def test_code_from_the_wild_is_told_what_to_change(name, expected, tmp_path):
    r = harness("check", WILD / name, "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    flat = " ".join((r.stdout + r.stderr).split())
    assert expected in flat, flat
    assert "self.module = cls()" not in flat  # not the harness's own traceback


def test_a_float_return_says_not_to_call_item(tmp_path):
    r = harness("check", SUBMISSIONS / "float_return.py", "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 2 and "do not call .item() or float() on the loss" in " ".join(r.stderr.split())


def test_a_variadic_forward_gets_the_two_losses_only(tmp_path):
    r = harness("check", WILD / "variadic_forward.py", "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = harness("evaluate", WILD / "variadic_forward.py", "--profile", "tiny", "--sandbox", "none",
                "--leaderboard", tmp_path / "lb.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr  # it raises if the epoch arrives among the losses


def test_a_forward_that_names_the_epoch_still_gets_it(tmp_path):
    r = harness("check", WILD / "epoch_then_rest.py", "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_directory_is_not_a_submission(tmp_path):
    r = harness("check", SUBMISSIONS / "wild", cwd=tmp_path)
    assert r.returncode == 2 and "is a directory; pass the submission file(s) in it" in r.stderr, r.stderr
