"""Commands that do not train start without torch: ``harness --help`` and the views of the
leaderboard (``leaderboard``, ``runs``, ``compare``, ``retire``) never import it. Checked from
Python's own record of what a process imported (``-X importtime``), on the installed command."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from helpers import REPO, harness_env, leaderboard_row


def imported(*args: str, cwd) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``harness ARGS`` with ``-X importtime``: the result and every module the process imported."""
    exe = shutil.which("harness")
    cmd = [sys.executable, "-X", "importtime"] + ([exe] if exe else ["-m", "harness.cli"])
    r = subprocess.run(
        cmd + list(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        env=harness_env(),
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    modules = {
        line.split("|")[2].strip()
        for line in r.stderr.splitlines()
        if line.startswith("import time:") and "self [us]" not in line
    }
    return r, modules


@pytest.fixture
def board(tmp_path):
    """A leaderboard with two entries (one of them the reference baseline) over three seeds."""
    from harness.results.store import append_row

    rows = [
        leaderboard_row(
            seed=s,
            acc=10.0 + s % 7,
            submission=name,
            kind=kind,
            submission_path=f"{name}",
            run_id=f"tiny/{kind}/{name}/resnet20-seed{s}",
        )
        for name, kind in (("loss.py", "submission"), ("equal_weighting.py", "baseline"))
        for s in (1, 2, 3)
    ]
    path = tmp_path / "leaderboard-tiny.csv"
    for row in rows:
        append_row(path, row)
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["leaderboard", "--profile", "tiny"],
        ["leaderboard", "--profile", "tiny", "--format", "json"],
        ["runs", "loss.py", "--profile", "tiny"],
        ["compare", "loss.py", "equal_weighting", "--profile", "tiny"],
        ["retire", "loss.py@abab", "--profile", "tiny"],
    ],
)
def test_commands_that_do_not_train_do_not_import_torch(args, board, tmp_path):
    r, modules = imported(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "harness.cli.commands" in modules and "rich" in modules  # the record is complete: the command ran
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}, sorted(
        m for m in modules if m.startswith("torch")
    )[:5]


@pytest.mark.slow  # over ~3 s
def test_a_command_that_builds_models_still_imports_torch_after_setting_the_thread_policy(tmp_path):
    """The counterpart: ``models`` needs torch, and ``harness/__init__.py`` sets
    OMP_WAIT_POLICY before torch is imported (it is read once, when torch loads OpenMP)."""
    r, modules = imported("models", cwd=tmp_path)
    assert r.returncode == 0 and "torch" in modules
    env = {k: v for k, v in harness_env().items() if k != "OMP_WAIT_POLICY"}
    code = "import os, harness.cli.commands, torch; print(os.environ['OMP_WAIT_POLICY'])"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert probe.stdout.strip() == "PASSIVE", probe.stderr
