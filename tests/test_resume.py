"""Resumable runs: per-epoch checkpoints, the loss module rebuilt by replaying the trainer's
messages, damaged checkpoints detected, and a SIGKILLed evaluation finishing exactly like an
uninterrupted one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest

from conftest import BASELINES, REPO, harness_env, run_spec, tiny_profile
from harness.sandbox import get_sandbox
from harness.train import RunObserver, run_one
from test_cli import harness


class Crash(BaseException):
    """Stands for a kill: not an Exception, so run_one does not turn it into a failed run."""


class CrashAfter(RunObserver):
    def __init__(self, epoch: int) -> None:
        self.epoch, self.resumed = epoch, []

    def run_resumed(self, spec, epochs_done, steps_done, notes):
        self.resumed.append((epochs_done, notes))

    def epoch_done(self, spec, metrics, best):
        if metrics.epoch == self.epoch:
            raise Crash


def _run(tmp_path, tiny_splits, name, observer=None, submission="gradnorm.py"):
    train, test = tiny_splits
    spec = run_spec(tiny_profile(epochs=3), submission=submission)
    return run_one(spec, submission=BASELINES / submission, train=train, test=test, run_dir=tmp_path / name,
                   sandbox=get_sandbox("none"), observer=observer)


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds")
    return rows


@pytest.mark.parametrize("submission", ["gradnorm.py", "famo.py"])
def test_a_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, tiny_splits, submission):
    """GradNorm: learnable parameters, the Gramian and epoch-0 state; FAMO: optimizer state in
    plain Python. Both must be rebuilt by the replay for the numbers to match to the bit."""
    whole = _run(tmp_path, tiny_splits, "whole", submission=submission)
    with pytest.raises(Crash):
        _run(tmp_path, tiny_splits, "cut", CrashAfter(epoch=1), submission=submission)
    assert len(_metrics(tmp_path / "cut")) == 2 and (tmp_path / "cut" / "checkpoint" / "manifest.json").exists()
    watcher = CrashAfter(epoch=-1)
    resumed = _run(tmp_path, tiny_splits, "cut", watcher, submission=submission)
    assert watcher.resumed == [(2, [])]
    assert resumed.result.status == "ok"
    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "whole")
    assert resumed.loss_state == whole.loss_state
    assert not (tmp_path / "cut" / "checkpoint").exists()  # removed once the run finished


def test_a_damaged_checkpoint_falls_back_to_the_previous_one_then_to_scratch(tmp_path, tiny_splits):
    train, test = tiny_splits
    spec = run_spec(tiny_profile(epochs=4), submission="gradnorm.py")

    def go(observer):
        return run_one(spec, submission=BASELINES / "gradnorm.py", train=train, test=test, run_dir=tmp_path / "r",
                       sandbox=get_sandbox("none"), observer=observer)

    with pytest.raises(Crash):
        go(CrashAfter(epoch=2))  # checkpoints after epochs 1 and 2
    ckpt = tmp_path / "r" / "checkpoint"
    newest = ckpt / "epoch-3.pt"
    newest.write_bytes(newest.read_bytes()[:-10] + b"0123456789")
    watcher = CrashAfter(epoch=2)
    with pytest.raises(Crash):
        go(watcher)
    assert watcher.resumed == [(2, ["checkpoint epoch-3.pt is damaged (checksum mismatch)"])]
    # now damage both: the run starts from scratch and says so
    for f in ckpt.glob("epoch-*.pt"):
        f.write_bytes(b"garbage")
    watcher = CrashAfter(epoch=-1)
    outcome = go(watcher)
    assert outcome.result.status == "ok" and len(_metrics(tmp_path / "r")) == 4
    assert watcher.resumed[0][0] == 0 and len(watcher.resumed[0][1]) == 2


def _evaluate_and_kill_in_second_epoch(cwd):
    proc = subprocess.Popen([shutil.which("harness"), "evaluate", str(REPO / "submissions" / "example_loss.py"), "--profile", "smoke",
                                   "--arch", "resnet20"], cwd=cwd, env=harness_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    metrics = None
    while time.monotonic() < deadline and proc.poll() is None:
        # the epoch-1 checkpoint is complete once the manifest names it: the run is in epoch 2
        found = list((cwd / "runs").glob("smoke/*/public/resnet20-seed42/checkpoint/manifest.json"))
        if found and '"epochs_done": 1' in found[0].read_text():
            metrics = found[0].parent.parent / "metrics.jsonl"
            break
        time.sleep(0.05)
    assert metrics is not None, "the first epoch's checkpoint never appeared"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    return metrics


def test_a_sigkilled_smoke_evaluation_resumes_and_matches_an_uninterrupted_one(tmp_path, readme_smoke_run):
    first, whole = readme_smoke_run  # uninterrupted: the README's command
    assert first.returncode == 0, first.stdout + first.stderr
    cut = tmp_path / "cut"
    cut.mkdir()
    metrics = _evaluate_and_kill_in_second_epoch(cut)
    assert metrics.read_text().count("\n") in (1, 2)  # killed in epoch 2 (or just after its metrics line)
    assert not (cut / "leaderboard-smoke.csv").exists() or len(pd.read_csv(cut / "leaderboard-smoke.csv")) == 0
    r = harness("evaluate", REPO / "submissions" / "example_loss.py", "--profile", "smoke", "--arch", "resnet20",
                cwd=cut)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming after epoch" in r.stdout
    trained = [line.split("epoch ")[1][:3] for line in r.stdout.splitlines() if "seed 42  epoch " in line]
    assert "1/3" not in trained and "3/3" in trained, r.stdout  # only the missing epochs were trained
    a, b = pd.read_csv(whole / "leaderboard-smoke.csv"), pd.read_csv(cut / "leaderboard-smoke.csv")
    a = a[a["arch"] == "resnet20"]
    assert len(b) == 1 and (a["best_fine_acc"].tolist(), a["final_fine_acc"].tolist()) == (b["best_fine_acc"].tolist(),
                                                                           b["final_fine_acc"].tolist())
