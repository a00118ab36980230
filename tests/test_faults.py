"""Faults an evaluation survives, each through the command a user runs: a run's loss worker or
its whole process killed under ``--jobs`` (only that run fails, with the reason), Ctrl-C (a clean
stop: sandboxes removed, checkpoints kept, a message saying how to resume) and a full disk while
the row is appended (no partial row; the row is recorded by the next evaluation)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
from helpers import REPO, SUBMISSIONS, LiveHarness, child_pids, cmdline, harness_env, leaderboard_row, require_sandbox

from harness.executors import STOP_GRACE_S

pytestmark = pytest.mark.slow  # trains: evaluations interrupted, killed and resumed

SLOW = SUBMISSIONS / "slow_steps.py"


@pytest.mark.bwrap
def test_under_jobs_a_killed_worker_or_run_process_fails_that_run_and_the_others_finish(tmp_path):
    require_sandbox("bwrap")
    h = LiveHarness(
        "evaluate",
        SLOW,
        "--profile",
        "tiny",
        "--jobs",
        "2",
        "--sandbox",
        "bwrap",
        "--seed",
        "1",
        "--seed",
        "2",
        "--seed",
        "3",
        cwd=tmp_path,
    )
    try:
        # seeds 1 and 2 in their processes and training (one may start training before the other's
        # process is reported)
        pids = h.wait_for_runs(2, ": training 1 epoch")
        assert set(pids) == {1, 2}
        time.sleep(1.5)  # into the training steps (2.5 s each, slow_steps.py; the worker starts in a fraction of that)
        # seed 1: kill its loss worker (the bubblewrap sandbox, a child of the run's process), once it is there:
        # on a loaded machine the run may not have started it yet
        deadline = time.monotonic() + 60
        while not (bwraps := [p for p in child_pids(pids[1]) if os.path.basename((cmdline(p) or [""])[0]) == "bwrap"]):
            assert time.monotonic() < deadline, [cmdline(p) for p in child_pids(pids[1])]
            time.sleep(0.1)
        assert len(bwraps) == 1, [cmdline(p) for p in child_pids(pids[1])]
        os.killpg(bwraps[0], signal.SIGKILL)
        # seed 2: kill the run's whole process
        os.kill(pids[2], signal.SIGKILL)
        rc, out = h.finish()
    finally:
        h.kill()
    assert rc == 1, out
    df = pd.read_csv(tmp_path / "leaderboard-tiny.csv").set_index("seed")
    assert df.loc[1, "status"] == "failed" and df.loc[2, "status"] == "failed" and df.loc[3, "status"] == "ok"
    flat = " ".join(out.split())
    # killed in its training steps (or, on a loaded machine, while it was still starting)
    assert re.search(
        r"run failed: slow_steps.py resnet20 seed 1: (epoch 0, step \d|starting the loss module): the "
        r"loss worker exited[^(]* \(killed by signal SIGKILL",
        flat,
    ), out
    assert (
        "run failed: slow_steps.py resnet20 seed 2: the run's process died without a result (exit code -9)" in flat
    ), out
    assert "3/3 runs ended, 2 failed" in flat


def _checkpoint_epochs(run_dir) -> int:
    manifest = json.loads((run_dir / "checkpoint" / "manifest.json").read_text())
    return max(c["epochs_done"] for c in manifest["checkpoints"])


def test_ctrl_c_stops_cleanly_removes_sandboxes_keeps_checkpoints_and_says_how_to_resume(tmp_path):
    """SIGINT to the process group, as a terminal's Ctrl-C sends it, during a --jobs 2 evaluation: both
    runs in their second epoch of two (the loss sleeps there: idle_steps.py)."""
    h = LiveHarness(
        "evaluate",
        SUBMISSIONS / "idle_steps.py",
        "--profile",
        "selftest",
        "--jobs",
        "2",
        "--seed",
        "1",
        "--seed",
        "2",
        cwd=tmp_path,
    )
    try:
        sandbox = h.wait_for(r"in sandbox '(\w+)'").group(1)
        # both runs' processes, and both past their first epoch (reported after its checkpoint is written)
        pids = list(h.wait_for_runs(2, "  epoch 1/2").values())
        os.killpg(h.proc.pid, signal.SIGINT)
        interrupted = time.monotonic()
        rc, out = h.finish(timeout=120)
        stopped_in = time.monotonic() - interrupted
    finally:
        h.kill()
    assert rc == 130, out
    assert stopped_in < STOP_GRACE_S - 5, stopped_in  # the runs unwound by themselves; none had to be killed
    assert "interrupted" in out and "run the same command again to resume" in " ".join(out.split())
    assert "Traceback" not in out, out
    board = tmp_path / "leaderboard-selftest.csv"
    assert not board.exists() or pd.read_csv(board).empty
    runs = sorted((tmp_path / "runs").glob("selftest/*/*/public/resnet20-seed*"))
    assert len(runs) == 2 and all(_checkpoint_epochs(r) >= 1 for r in runs)
    for pid in pids:  # the run processes are gone, and nothing they started is left
        assert not os.path.exists(f"/proc/{pid}")
    leftovers = [p for p in map(int, filter(str.isdigit, os.listdir("/proc"))) if str(tmp_path) in " ".join(cmdline(p))]
    assert leftovers == [], [cmdline(p) for p in leftovers]
    if sandbox == "docker":
        from harness.isolation.sandbox.docker import LABEL, _client

        owners = [c.labels.get(LABEL) for c in _client().containers.list(all=True, filters={"label": LABEL})]
        assert not set(map(str, pids)) & set(owners), owners


def _can_mount_tmpfs() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=8k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


def test_a_full_disk_while_appending_leaves_no_partial_row_and_the_next_evaluation_records_it(tmp_path):
    """The leaderboard lives on a 16 KiB tmpfs filled but for part of one page; the run's row does
    not fit. Then space is freed and the same command records the kept row without training."""
    if not _can_mount_tmpfs():
        if os.environ.get("HARNESS_REQUIRE_MOUNT"):  # CI: root, so this must run
            pytest.fail("HARNESS_REQUIRE_MOUNT is set but a tmpfs cannot be mounted (unshare -m)")
        pytest.skip("needs root and mount namespaces (unshare -m) for a tiny tmpfs")
    lb_dir = tmp_path / "small-disk"
    lb_dir.mkdir()
    seed_rows = tmp_path / "before.csv"
    from harness import results as leaderboard

    n, size = 0, 0
    while size < 3300:
        leaderboard.append_row(seed_rows, leaderboard_row(seed=100 + n))
        row_len, size, n = seed_rows.stat().st_size - size, seed_rows.stat().st_size, n + 1
    # one more row, padded to end the file at 4050 bytes: the run's row needs a page the disk lacks
    pad = 4050 - size - row_len
    leaderboard.append_row(seed_rows, leaderboard_row(seed=100 + n, submission="loss" + "x" * pad + ".py"))
    n += 1
    assert seed_rows.stat().st_size == 4050
    cmd = [
        shutil.which("harness"),
        "evaluate",
        str(REPO / "submissions" / "example_loss.py"),
        "--profile",
        "tiny",
        "--leaderboard",
        str(lb_dir / "lb.csv"),
    ]
    script = f"""
        set -u
        mount -t tmpfs -o size=16k tmpfs {lb_dir}
        cp {seed_rows} {lb_dir}/lb.csv
        dd if=/dev/zero of={lb_dir}/fill bs=4096 count=3 2>/dev/null
        {" ".join(cmd)} > {tmp_path}/first.out 2>&1; echo $? > {tmp_path}/first.rc
        cp {lb_dir}/lb.csv {tmp_path}/after-first.csv
        rm {lb_dir}/fill
        {" ".join(cmd)} > {tmp_path}/second.out 2>&1; echo $? > {tmp_path}/second.rc
        cp {lb_dir}/lb.csv {tmp_path}/after-second.csv
    """
    subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=tmp_path,
        env=harness_env(),
        check=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    first = (tmp_path / "first.out").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "1", first
    flat = " ".join(first.split())
    assert "could not write the row of example_loss.py resnet20 seed 42" in flat, first
    assert "No space left on device" in flat and "recorded without training again" in flat, first
    assert (tmp_path / "after-first.csv").read_bytes() == seed_rows.read_bytes()  # not a byte of a partial row
    second = (tmp_path / "second.out").read_text()
    assert (tmp_path / "second.rc").read_text().strip() == "0", second
    assert "recorded example_loss.py resnet20 seed 42" in second, second
    assert not re.search(r"training \d+ epoch", second), second  # recorded, not trained again
    after = pd.read_csv(tmp_path / "after-second.csv")
    assert len(after) == n + 1 and after["status"].tolist()[-1] == "ok" and after["seed"].tolist()[-1] == 42
    pending = list((tmp_path / "runs").rglob("row.json"))
    assert pending == []


def test_a_pending_row_is_recorded_only_once_its_file_has_passed_the_check(tmp_path):
    """A row an earlier evaluation kept in row.json is appended after the file's interface check, never
    while planning: a file the check refuses now leaves the leaderboard as it was (and its row.json in
    place); a file that passes has its row recorded without training again."""
    from harness import results as leaderboard
    from harness.protocol import EntryKey
    from harness.results.rundir import EvalDir
    from harness.util.fileio import sha256_file

    def pending(name):
        sha = sha256_file(tmp_path / name)
        run = EvalDir.of(tmp_path / "runs", "tiny", EntryKey(kind="submission", name=name), sha).path
        row = leaderboard_row(
            submission=name,
            submission_sha256=sha,
            submission_path=name,
            run_id=f"tiny/submission/{name[:-3]}-{sha[:12]}/public/resnet20-seed42",
        )
        (run / "public" / "resnet20-seed42").mkdir(parents=True)
        (run / "public" / "resnet20-seed42" / "row.json").write_text(row.model_dump_json())
        return run / "public" / "resnet20-seed42" / "row.json"

    lb = tmp_path / "leaderboard-tiny.csv"
    leaderboard.append_row(lb, leaderboard_row(submission="other.py"))
    before = lb.read_bytes()
    shutil.copy(SUBMISSIONS / "float_return.py", tmp_path / "refused.py")  # passes the static check, not the interface
    kept = pending("refused.py")
    r = subprocess.run(
        [shutil.which("harness"), "evaluate", "refused.py", "--profile", "tiny", "--sandbox", "none"],
        cwd=tmp_path,
        env=harness_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "interface check failed" in " ".join(r.stderr.split()), r.stdout + r.stderr
    assert lb.read_bytes() == before and kept.exists()  # no row appended; the kept one still waits
    shutil.copy(REPO / "submissions" / "example_loss.py", tmp_path / "passes.py")
    kept = pending("passes.py")
    r = subprocess.run(
        [shutil.which("harness"), "evaluate", "passes.py", "--profile", "tiny", "--sandbox", "none"],
        cwd=tmp_path,
        env=harness_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert out.index("checking passes.py") < out.index("recorded passes.py resnet20 seed 42"), out
    assert not re.search(r"training \d+ epoch", r.stdout) and not kept.exists()
    rows = pd.read_csv(lb)
    assert rows["submission"].tolist() == ["other.py", "passes.py"] and rows["seed"].tolist() == [42, 42]
