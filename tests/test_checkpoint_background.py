"""Checkpoints written in the background (the default on a GPU, forced here on the CPU): what is
written is the state at the epoch's end even though training goes on changing it, a write cut short
leaves the previous checkpoint in force, its error surfaces, and a run stopped and resumed with
background writes ends bit for bit like an uninterrupted one."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from helpers import BASELINES, CrashAfter, run_metrics, run_spec, tiny_profile

from harness.isolation.sandbox import get_sandbox
from harness.training import checkpoint, trainer
from harness.training.checkpoint import Checkpointer
from harness.training.trainer import run_one


def _state(value: float) -> dict:
    w = torch.full((3,), value)
    return {"model": {"w": w}, "optimizer": {"state": {0: {"momentum_buffer": w * 2}}, "param_groups": []}}


def test_a_background_checkpoint_holds_the_state_of_its_epoch(tmp_path, monkeypatch):
    """The writer is held back until training has changed the tensors: it must write the values
    they had when save() was called."""
    release = threading.Event()
    real = checkpoint.write_atomic

    def held(path, data):
        release.wait(10)
        real(path, data)

    monkeypatch.setattr(checkpoint, "write_atomic", held)
    spec = run_spec(tiny_profile())
    cp = Checkpointer(tmp_path / "ckpt", spec)
    state = _state(1.0)
    cp.save(1, [], [], state, background=True)
    state["model"]["w"].add_(100.0)  # the next epoch trains on
    state["optimizer"]["state"][0]["momentum_buffer"].add_(100.0)
    release.set()
    cp.wait()
    resume, notes = Checkpointer(tmp_path / "ckpt", spec).load()
    assert notes == [] and resume is not None and resume.epochs_done == 1
    assert torch.equal(resume.state["model"]["w"], torch.full((3,), 1.0))
    assert torch.equal(resume.state["optimizer"]["state"][0]["momentum_buffer"], torch.full((3,), 2.0))


def test_a_background_write_cut_short_leaves_the_previous_checkpoint_and_says_why(tmp_path, monkeypatch):
    spec = run_spec(tiny_profile())
    cp = Checkpointer(tmp_path / "ckpt", spec)
    cp.save(1, [], [], _state(1.0), background=True)
    cp.wait()
    real = checkpoint.write_atomic

    def no_manifest(path, data):
        if path.name == "manifest.json":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(checkpoint, "write_atomic", no_manifest)
    cp.save(2, [], [], _state(2.0), background=True)
    with pytest.raises(OSError, match="No space left"):
        cp.wait()
    resume, _ = Checkpointer(tmp_path / "ckpt", spec).load()
    assert resume is not None and resume.epochs_done == 1
    assert json.loads((tmp_path / "ckpt" / "manifest.json").read_text())["checkpoints"][-1]["epochs_done"] == 1


@pytest.mark.slow
def test_a_run_resumed_from_background_checkpoints_ends_bit_for_bit(tmp_path, small_splits, monkeypatch):
    monkeypatch.setattr(trainer, "background_writes", lambda device: True)
    train, test = small_splits
    spec = run_spec(tiny_profile(epochs=3, batch_size=16), submission="gradnorm.py")

    def go(name, hooks=None):
        return run_one(
            spec,
            submission=BASELINES / "gradnorm.py",
            train=train,
            test=test,
            run_dir=tmp_path / name,
            sandbox=get_sandbox("none"),
            observer=hooks,
        )

    whole = go("whole")
    with pytest.raises(KeyboardInterrupt):
        go("cut", CrashAfter(1, KeyboardInterrupt))
    watcher = CrashAfter(-1)
    resumed = go("cut", watcher)
    assert watcher.resumed_at == [(2, [])] and resumed.result.status == "ok"

    assert run_metrics(tmp_path / "cut") == run_metrics(tmp_path / "whole")
    for key, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
