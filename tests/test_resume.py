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
from helpers import (
    BASELINES,
    REPO,
    SUBMISSIONS,
    Crash,
    CrashAfter,
    harness,
    harness_env,
    run_metrics,
    run_spec,
    tiny_profile,
)

from harness.isolation.sandbox import get_sandbox
from harness.results.rundir import RunDir
from harness.training.trainer import run_one

pytestmark = pytest.mark.slow  # trains: runs interrupted and resumed


def _run(tmp_path, small_splits, name, observer=None, submission="gradnorm.py"):
    train, test = small_splits
    spec = run_spec(tiny_profile(epochs=3, batch_size=16), submission=submission)
    return run_one(
        spec,
        submission=BASELINES / submission,
        train=train,
        test=test,
        run_dir=tmp_path / name,
        sandbox=get_sandbox("none"),
        observer=observer,
    )


@pytest.mark.parametrize("submission", ["gradnorm.py", "famo.py"])
def test_a_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, small_splits, submission):
    """GradNorm: learnable parameters, the Gramian and epoch-0 state; FAMO: optimizer state in
    plain Python. Both must be rebuilt by the replay for the numbers to match to the bit."""
    whole = _run(tmp_path, small_splits, "whole", submission=submission)
    with pytest.raises(Crash):
        _run(tmp_path, small_splits, "cut", CrashAfter(epoch=1), submission=submission)
    assert len(run_metrics(tmp_path / "cut")) == 2 and (tmp_path / "cut" / "checkpoint" / "manifest.json").exists()
    watcher = CrashAfter(epoch=-1)
    resumed = _run(tmp_path, small_splits, "cut", watcher, submission=submission)
    assert watcher.resumed_at == [(2, [])]
    assert resumed.result.status == "ok"
    assert run_metrics(tmp_path / "cut") == run_metrics(tmp_path / "whole")
    assert resumed.loss_state == whole.loss_state
    assert not (tmp_path / "cut" / "checkpoint").exists()  # removed once the run finished
    # its training time (the cost's input) counts every epoch, the two trained before the interruption too
    seconds = [json.loads(line)["seconds"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert len(seconds) == 3 and resumed.result.wall_seconds == pytest.approx(sum(seconds), rel=1e-9)


def test_a_line_torn_by_the_interruption_keeps_every_earlier_step_and_epoch(tmp_path, small_splits):
    """The kill cut epoch 2's lines short: on resume the steps and epochs before the checkpoint are
    all kept (not the whole log dropped for one bad line), and the run ends with the uninterrupted
    run's logs."""
    _run(tmp_path, small_splits, "whole")
    with pytest.raises(Crash):
        _run(tmp_path, small_splits, "cut", CrashAfter(epoch=1))
    cut, whole = RunDir(tmp_path / "cut"), RunDir(tmp_path / "whole")
    before = cut.read_steps()
    assert {x["epoch"] for x in before} == {0, 1}
    for log in (cut.steps, cut.metrics):  # half a line, as a write cut by SIGKILL leaves it
        with open(log, "a") as f:
            f.write('{"step": 99, "epoch": 2, "lo')
    assert cut.read_steps() == before and len(cut.read_metrics()) == 2
    watcher = CrashAfter(epoch=-1)
    resumed = _run(tmp_path, small_splits, "cut", watcher)
    assert watcher.resumed_at == [(2, [])] and resumed.result.status == "ok"
    assert cut.read_steps()[: len(before)] == before
    assert [(x["epoch"], x["step"]) for x in cut.read_steps()] == [(x["epoch"], x["step"]) for x in whole.read_steps()]
    assert run_metrics(tmp_path / "cut") == run_metrics(tmp_path / "whole")  # every line whole again


def test_a_damaged_checkpoint_falls_back_to_the_previous_one_then_to_scratch(tmp_path, small_splits):
    train, test = small_splits
    spec = run_spec(tiny_profile(epochs=4, batch_size=16), submission="gradnorm.py")

    def go(observer):
        return run_one(
            spec,
            submission=BASELINES / "gradnorm.py",
            train=train,
            test=test,
            run_dir=tmp_path / "r",
            sandbox=get_sandbox("none"),
            observer=observer,
        )

    with pytest.raises(Crash):
        go(CrashAfter(epoch=2))  # checkpoints after epochs 1 and 2
    ckpt = tmp_path / "r" / "checkpoint"
    newest = ckpt / "epoch-3.pt"
    newest.write_bytes(newest.read_bytes()[:-10] + b"0123456789")
    watcher = CrashAfter(epoch=2)
    with pytest.raises(Crash):
        go(watcher)
    assert watcher.resumed_at == [(2, ["checkpoint epoch-3.pt is damaged (checksum mismatch)"])]
    # now damage both: the run starts from scratch and says so
    for f in ckpt.glob("epoch-*.pt"):
        f.write_bytes(b"garbage")
    watcher = CrashAfter(epoch=-1)
    outcome = go(watcher)
    assert outcome.result.status == "ok" and len(run_metrics(tmp_path / "r")) == 4
    assert watcher.resumed_at[0][0] == 0 and len(watcher.resumed_at[0][1]) == 2


def test_after_falling_back_to_an_older_checkpoint_the_next_save_is_usable(tmp_path, small_splits):
    """The newest checkpoint's stretch of the message log is damaged; the run resumes from the older
    one. The next checkpoint must not inherit the damaged bytes: another interruption still resumes
    from it, and the run ends exactly as an uninterrupted one."""
    train, test = small_splits
    spec = run_spec(tiny_profile(epochs=5, batch_size=16), submission="gradnorm.py")

    def go(name, observer):
        return run_one(
            spec,
            submission=BASELINES / "gradnorm.py",
            train=train,
            test=test,
            run_dir=tmp_path / name,
            sandbox=get_sandbox("none"),
            observer=observer,
        )

    whole = go("whole", None)
    with pytest.raises(Crash):
        go("r", CrashAfter(epoch=2))  # checkpoints after 2 and 3 epochs are kept
    ckpt = tmp_path / "r" / "checkpoint"
    entries = json.loads((ckpt / "manifest.json").read_text())["checkpoints"]
    assert [e["epochs_done"] for e in entries] == [2, 3]
    log = bytearray((ckpt / "messages.bin").read_bytes())
    log[entries[0]["message_bytes"] + 20] ^= 0xFF  # inside the third epoch's messages
    (ckpt / "messages.bin").write_bytes(bytes(log))
    watcher = CrashAfter(epoch=2)
    with pytest.raises(Crash):
        go("r", watcher)  # resumes after 2 epochs, trains the third again, saves, stops
    assert watcher.resumed_at == [(2, ["checkpoint epoch-3.pt is damaged (checksum mismatch)"])]
    watcher = CrashAfter(epoch=-1)
    resumed = go("r", watcher)
    assert watcher.resumed_at == [(3, [])]  # the checkpoint written after the fallback is intact
    assert resumed.result.status == "ok"
    assert run_metrics(tmp_path / "r") == run_metrics(tmp_path / "whole")
    assert resumed.loss_state == whole.loss_state


def test_an_unusable_checkpoint_is_reported_and_the_run_starts_fresh(tmp_path, small_splits):
    """Intact files (checksums match) whose content this run cannot use, e.g. written by another
    build: ``run_one`` must not raise (every retry would fail the same way), but say so and train
    from scratch, exactly as a fresh run."""
    import torch

    from harness.training.checkpoint import Checkpointer
    from harness.training.models import build_model

    train, test = small_splits
    spec = run_spec(tiny_profile(epochs=2, batch_size=16), submission="dwa.py")

    def go(name, observer=None):
        return run_one(
            spec,
            submission=BASELINES / "dwa.py",
            train=train,
            test=test,
            run_dir=tmp_path / name,
            sandbox=get_sandbox("none"),
            observer=observer,
        )

    fresh = go("fresh")
    for name, state in {
        "wrong-model": {
            "model": build_model("resnet56").state_dict(),
            "optimizer": {},
            "rng_cpu": torch.get_rng_state(),
        },
        "wrong-rng": {
            "model": build_model("resnet20").state_dict(),
            "rng_cpu": torch.zeros(3),
            "optimizer": torch.optim.SGD(build_model("resnet20").parameters(), lr=0.1).state_dict(),
        },
    }.items():
        Checkpointer(RunDir(tmp_path / name).checkpoint, spec).save(1, fresh.history[:1], [], state)
        watcher = CrashAfter(epoch=-1)
        outcome = go(name, watcher)
        assert outcome.result.status == "ok", outcome.result.reason
        ((epochs, notes),) = watcher.resumed_at
        assert epochs == 0 and len(notes) == 1 and "cannot be used" in notes[0] and "starting from scratch" in notes[0]
        assert run_metrics(tmp_path / name) == run_metrics(tmp_path / "fresh"), name
        for key, value in fresh.model.state_dict().items():
            assert torch.equal(outcome.model.state_dict()[key], value), (name, key)


def test_checkpoint_tensors_load_on_the_cpu_whatever_the_run_device(tmp_path, small_splits, monkeypatch):
    """The contract the CUDA resume relies on: ``set_rng_state`` (CPU and CUDA alike) takes a CPU
    byte tensor, so every tensor, RNG states included, must come back on the CPU; the trainer moves
    the model and optimizer state to the run's device itself."""
    import torch

    from harness.training.checkpoint import Checkpointer

    with pytest.raises(Crash):
        _run(tmp_path, small_splits, "r", CrashAfter(epoch=0))
    spec = run_spec(tiny_profile(epochs=3, batch_size=16), submission="gradnorm.py")
    real_load, locations = torch.load, []
    monkeypatch.setattr(torch, "load", lambda *a, **k: locations.append(k.get("map_location")) or real_load(*a, **k))
    resume, notes = Checkpointer(RunDir(tmp_path / "r").checkpoint, spec).load()
    assert locations == ["cpu"]  # a GPU run's tensors (RNG states included) come back on the CPU
    assert resume is not None and resume.epochs_done == 1 and notes == []
    tensors = [resume.state["rng_cpu"], *resume.state["model"].values()]
    tensors += [v for s in resume.state["optimizer"]["state"].values() for v in s.values() if torch.is_tensor(v)]
    assert {t.device.type for t in tensors} == {"cpu"}
    assert resume.state["rng_cpu"].dtype == torch.uint8
    torch.set_rng_state(resume.state["rng_cpu"])


def test_a_failure_caused_by_the_submission_is_not_resumed(tmp_path, small_splits):
    """Failing on purpose must not buy a re-draw of the epochs since the last checkpoint: the
    checkpoint goes with the failure, and the next attempt starts from epoch 0."""

    train, test = small_splits
    spec = run_spec(tiny_profile(epochs=3, batch_size=16), submission="fails_in_second_epoch.py")

    def go(observer):
        return run_one(
            spec,
            submission=SUBMISSIONS / "fails_in_second_epoch.py",
            train=train,
            test=test,
            run_dir=tmp_path / "r",
            sandbox=get_sandbox("none"),
            observer=observer,
        )

    first = go(None)
    assert first.result.status == "failed" and first.result.epochs_done == 1
    assert "deliberate failure" in first.result.reason
    assert not (tmp_path / "r" / "checkpoint").exists()
    assert "a new attempt starts from epoch 0" in (tmp_path / "r" / "failure.txt").read_text()
    watcher = CrashAfter(epoch=-1)
    second = go(watcher)
    assert watcher.resumed_at == [] and second.result.epochs_done == 1  # trained epoch 0 again, failed again


def _evaluate_and_kill_in_second_epoch(cwd):
    proc = subprocess.Popen(
        [
            shutil.which("harness"),
            "evaluate",
            str(REPO / "submissions" / "example_loss.py"),
            "--profile",
            "smoke",
            "--arch",
            "resnet20",
        ],
        cwd=cwd,
        env=harness_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    metrics = None
    while time.monotonic() < deadline and proc.poll() is None:
        # the epoch-1 checkpoint is complete once the manifest names it: the run is in epoch 2
        found = list((cwd / "runs").glob("smoke/*/*/public/resnet20-seed42*/checkpoint/manifest.json"))
        if found and '"epochs_done": 1' in found[0].read_text():
            metrics = found[0].parent.parent / "metrics.jsonl"
            break
        time.sleep(0.05)
    assert metrics is not None, "the first epoch's checkpoint never appeared"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    return metrics


def test_a_sigkilled_smoke_evaluation_resumes_and_matches_an_uninterrupted_one(tmp_path, readme_smoke_run):
    first, whole, _ = readme_smoke_run  # uninterrupted: the README's command
    assert first.returncode == 0, first.stdout + first.stderr
    cut = tmp_path / "cut"
    cut.mkdir()
    metrics = _evaluate_and_kill_in_second_epoch(cut)
    assert metrics.read_text().count("\n") in (1, 2)  # killed in epoch 2 (or just after its metrics line)
    killed = RunDir(metrics.parent)
    first_epoch = [x for x in killed.read_steps() if x["epoch"] == 0]
    assert first_epoch, "the killed run logged no step of its first epoch"
    with open(killed.steps, "a") as f:  # and a line torn by the kill, whether or not this kill tore one
        f.write('{"step": 9999, "epoch": 1, "lo')
    assert not (cut / "leaderboard-smoke.csv").exists() or len(pd.read_csv(cut / "leaderboard-smoke.csv")) == 0
    r = harness(
        "evaluate", REPO / "submissions" / "example_loss.py", "--profile", "smoke", "--arch", "resnet20", cwd=cut
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming after epoch" in r.stdout
    trained = [line.split("epoch ")[1][:3] for line in r.stdout.splitlines() if "seed 42  epoch " in line]
    assert "1/3" not in trained and "3/3" in trained, r.stdout  # only the missing epochs were trained
    # every step logged before the checkpoint is kept as it was; the log ends as the uninterrupted run's
    resumed_steps = killed.read_steps()
    assert resumed_steps[: len(first_epoch)] == first_epoch
    (uninterrupted,) = whole.glob("runs/smoke/*/*/public/resnet20-seed42*")
    assert [(x["epoch"], x["step"]) for x in resumed_steps] == [
        (x["epoch"], x["step"]) for x in RunDir(uninterrupted).read_steps()
    ]
    a, b = pd.read_csv(whole / "leaderboard-smoke.csv"), pd.read_csv(cut / "leaderboard-smoke.csv")
    a = a[a["arch"] == "resnet20"]
    assert len(b) == 1 and (a["best_fine_acc"].tolist(), a["final_fine_acc"].tolist()) == (
        b["best_fine_acc"].tolist(),
        b["final_fine_acc"].tolist(),
    )


def test_a_checkpoint_whose_messages_another_build_wrote_is_not_replayed(tmp_path):
    """STEP records of another layout (an older harness's, before the head norms and the losses after
    the update joined them) would be refused by the worker as a failure of the submission: the
    checkpoint is set aside instead, and the run starts from scratch."""
    from harness.isolation import wire
    from harness.training.checkpoint import Checkpointer

    spec = run_spec(tiny_profile(epochs=3), submission="famo.py")
    ckpt = Checkpointer(RunDir(tmp_path / "r").checkpoint, spec)
    old_record = wire.pack_frame(wire.STEP, bytes(wire.STEP_RECORD.size - 32))
    ckpt.save(1, [], [old_record], {"model": {}})
    resume, notes = ckpt.load()
    assert resume is None and len(notes) == 1 and "not this harness version's" in notes[0]
    ckpt.save(1, [], [wire.pack_frame(wire.STEP, bytes(wire.STEP_RECORD.size))], {"model": {}})
    resume, notes = ckpt.load()
    assert resume is not None and len(resume.frames) == 1 and notes == []
