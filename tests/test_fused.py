"""Fused seeds (harness.training.fused): the seeds of one run trained as one model give what their
separate runs give, to float rounding: every parameter and buffer of every seed, the loss module's
state, the metrics; on the plain and the per-task (Gramian) path, with a head a seed's loss leaves
out, the after-update pass, every optional input. An interrupted fused run resumes bit for bit
(also when it stopped between two seeds' checkpoints), a seed that fails leaves the others
training, and through the CLI the rows, run directories and identity are those of separate runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import torch.nn as nn
from helpers import BASELINES, SUBMISSIONS, CrashAfter, exact_profile, run_metrics, run_spec

from harness.events import RunObserver
from harness.isolation.sandbox import get_sandbox
from harness.results.rundir import RunDir
from harness.training.fused_run import fusable, run_fused
from harness.training.models import build_model, get_arch, register_arch
from harness.training.trainer import run_one

pytestmark = pytest.mark.slow  # trains: separate runs against fused ones

TOY = "toy_resnet_for_fused_tests"
try:
    get_arch(TOY)
except Exception:  # noqa: BLE001  (not registered yet in this process)

    class _Toy(nn.Module):
        """Small, with what the real backbones have: strided conv, BatchNorm, a residual, max-pooling."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
            self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
            self.pool = nn.MaxPool2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.stem(x)
            return self.pool(torch.relu(h + self.block(h))).mean(dim=(2, 3))

    register_arch(TOY, feature_dim=8)(_Toy)

SEEDS = (42, 123, 456)


def _profile(epochs=2):
    return exact_profile(epochs=epochs)


@pytest.fixture
def splits(tiny_splits):
    """64 train images (four steps of 16 an epoch) and 16 test images (one batch)."""
    train, test = tiny_splits
    return train.head(64), test.head(16)


def _specs(submission, precision, arch, seeds=SEEDS, epochs=2):
    return [
        run_spec(_profile(epochs), arch=arch, seed=s, submission=submission.name).model_copy(
            update={"precision": precision}
        )
        for s in seeds
    ]


def _separate(tmp_path, splits, submission, specs):
    train, test = splits
    return [
        run_one(
            spec,
            submission=submission,
            train=train,
            test=test,
            run_dir=tmp_path / f"separate-{spec.seed}",
            sandbox=get_sandbox("none"),
        )
        for spec in specs
    ]


def _fused(tmp_path, splits, submission, specs, name="fused", hooks=None):
    train, test = splits
    specs = [spec.model_copy(update={"fused": True}) for spec in specs]
    return run_fused(
        specs,
        submission=submission,
        train=train,
        test=test,
        sandbox=get_sandbox("none"),
        run_dirs=[RunDir(tmp_path / name / str(spec.seed)) for spec in specs],
        observers=hooks,
    )


FP64 = dict(rtol=1e-9, atol=1e-11)
CASES = [
    # the plain path, learnable loss parameters, on the task's ResNet-20
    ("resnet20", BASELINES / "uncertainty.py", "fp64", FP64),
    # the per-task (Gramian) path, the coarse task left out for epoch 0
    ("resnet20", SUBMISSIONS / "gramian_warmup.py", "fp64", FP64),
    # one seed leaves the coarse task out for the whole run: its head gets no gradient, fused or not
    (TOY, SUBMISSIONS / "seed_sits_out.py", "fp64", FP64),
    # the after-update pass (FAMO, official)
    (TOY, BASELINES / "famo.py", "fp64", FP64),
    # epoch, step, batch accuracies, learnable parameters, Python state, a task left out on some steps
    (TOY, SUBMISSIONS / "everything_inputs.py", "fp64", FP64),
    # float32 (one epoch: BatchNorm amplifies rounding over steps): the grouped kernels round differently
    (TOY, BASELINES / "uncertainty.py", "fp32", dict(rtol=2e-3, atol=2e-5)),
]
EPOCHS = {(TOY, "fp64"): 2, (TOY, "fp32"): 1, ("resnet20", "fp64"): 1}  # a few steps each (4 an epoch)


@pytest.mark.parametrize(
    "arch, submission, precision, tol",
    CASES,
    ids=["plain-resnet20", "gramian-resnet20", "seed-sits-out", "after-update", "every-input", "plain-fp32"],
)
def test_a_fused_run_equals_its_separate_runs(tmp_path, splits, arch, submission, precision, tol):
    specs = _specs(submission, precision, arch, epochs=EPOCHS[arch, precision])
    assert fusable(specs)
    separate = _separate(tmp_path, splits, submission, specs)
    fused = _fused(tmp_path, splits, submission, specs)
    dtype = getattr(torch, specs[0].dtype)
    for spec, a, b in zip(specs, separate, fused):
        assert a.result.status == b.result.status == "ok", (a.result.reason, b.result.reason)
        got, want = b.model.state_dict(), a.model.state_dict()
        assert got.keys() == want.keys()
        for key in want:  # every parameter and buffer (BatchNorm statistics, batches counted)
            torch.testing.assert_close(got[key], want[key], **tol, msg=f"seed {spec.seed}: {key}")
        assert a.loss_state.keys() == b.loss_state.keys()
        for key in a.loss_state:
            torch.testing.assert_close(
                torch.tensor(b.loss_state[key], dtype=torch.float64),
                torch.tensor(a.loss_state[key], dtype=torch.float64),
                **tol,
            )
        for ma, mb in zip(a.history, b.history):
            for field in ("train_fine_loss", "train_coarse_loss", "weight_fine", "weight_coarse"):
                assert getattr(mb, field) == pytest.approx(getattr(ma, field), rel=tol["rtol"], abs=tol["atol"])
            # the test split's losses are summed in float32 on both sides (evaluation.evaluate)
            assert mb.test_fine_loss == pytest.approx(ma.test_fine_loss, rel=max(tol["rtol"], 1e-5))
        torch.manual_seed(spec.seed)
        initial = build_model(arch).to(dtype).state_dict()
        assert not torch.equal(got["fine_head.weight"], initial["fine_head.weight"])
        if submission.name == "seed_sits_out.py":  # the seed that sits out (123) left its coarse head alone
            untouched = torch.equal(got["coarse_head.weight"], initial["coarse_head.weight"])
            assert untouched == (spec.seed == 123)


@pytest.mark.parametrize(
    "submission",
    [SUBMISSIONS / "seed_sits_out.py", BASELINES / "famo.py", SUBMISSIONS / "gramian_warmup.py"],
    ids=["seed-sits-out", "after-update", "gramian"],
)
def test_a_compiled_fused_run_equals_the_eager_one(tmp_path, splits, monkeypatch, submission):
    """--fuse with --compile: the fused forward (stacking included) through torch.compile (aot_eager
    here), in training, without gradient (the after-update pass) and in evaluation; a head a seed
    leaves out still gets no gradient."""
    from torch._dynamo.backends.registry import lookup_backend

    from harness.training import compiled

    calls = []

    def counting_aot_eager(gm, example_inputs):  # aot_eager, counting the calls of what it compiled
        run = lookup_backend("aot_eager")(gm, example_inputs)
        return lambda *args: calls.append(1) or run(*args)

    monkeypatch.setattr(compiled, "BACKEND", counting_aot_eager)
    specs = _specs(submission, "fp64", TOY)
    eager = _fused(tmp_path, splits, submission, specs, name="eager")
    got = _fused(tmp_path, splits, submission, [s.model_copy(update={"compile": True}) for s in specs], name="compiled")
    steps, test_batches = 2 * 4, 2 * 1  # 2 epochs of 4 steps; the 16 test images in one batch
    passes = steps * (2 if submission.name == "famo.py" else 1) + test_batches
    assert len(calls) >= passes  # every fused forward ran compiled (a graph break may split one into two)
    for spec, a, b in zip(specs, eager, got):
        assert a.result.status == b.result.status == "ok", (a.result.reason, b.result.reason)
        for key, value in a.model.state_dict().items():
            torch.testing.assert_close(b.model.state_dict()[key], value, **FP64, msg=f"seed {spec.seed}: {key}")
        if submission.name == "seed_sits_out.py" and spec.seed == 123:
            torch.manual_seed(123)
            initial = build_model(TOY).double().state_dict()
            assert torch.equal(b.model.state_dict()["coarse_head.weight"], initial["coarse_head.weight"])


@pytest.mark.parametrize("between_seeds", [False, True])
def test_an_interrupted_fused_run_resumes_bit_for_bit(tmp_path, splits, between_seeds):
    """Stopped after its second epoch; ``between_seeds``: as if the stop came after seed 42's
    checkpoint and before 123's (that one's newest checkpoint is gone): every seed then goes on from
    the epoch they all have."""
    submission = BASELINES / "famo.py"  # state in the worker and in the trainer (the after-update losses)
    specs = _specs(submission, "fp32", TOY, epochs=3)
    whole = _fused(tmp_path, splits, submission, specs, name="whole")
    with pytest.raises(KeyboardInterrupt):
        stop = [CrashAfter(1, KeyboardInterrupt), RunObserver(), RunObserver()]  # Ctrl-C: checkpoints kept
        _fused(tmp_path, splits, submission, specs, name="cut", hooks=stop)
    if between_seeds:
        ckpt = tmp_path / "cut" / "123" / "checkpoint"
        manifest = json.loads((ckpt / "manifest.json").read_text())
        assert [e["epochs_done"] for e in manifest["checkpoints"]] == [1, 2]
        (ckpt / manifest["checkpoints"][-1]["file"]).unlink()
        manifest["checkpoints"] = manifest["checkpoints"][:-1]
        (ckpt / "manifest.json").write_text(json.dumps(manifest))
    resumed = _fused(tmp_path, splits, submission, specs, name="cut")
    for spec, a, b in zip(specs, whole, resumed):
        assert b.result.status == "ok", b.result.reason
        assert run_metrics(tmp_path / "cut" / str(spec.seed)) == run_metrics(tmp_path / "whole" / str(spec.seed))
        for key, value in a.model.state_dict().items():
            assert torch.equal(b.model.state_dict()[key], value), key
        assert a.loss_state == b.loss_state


def test_a_seed_that_fails_leaves_the_others_training(tmp_path, splits):
    submission = SUBMISSIONS / "one_seed_raises.py"
    specs = _specs(submission, "fp64", TOY)
    separate = _separate(tmp_path, splits, submission, specs)
    fused = _fused(tmp_path, splits, submission, specs)
    for spec, a, b in zip(specs, separate, fused):
        assert a.result.status == b.result.status == ("failed" if spec.seed == 123 else "ok")
        if spec.seed == 123:
            assert "gives up in epoch 1" in (tmp_path / "fused" / "123" / "failure.txt").read_text()
            assert b.result.epochs_done == 1
            continue
        for key, value in a.model.state_dict().items():
            torch.testing.assert_close(b.model.state_dict()[key], value, **FP64)


def test_through_the_cli_rows_and_run_directories_are_those_of_separate_runs(selftest_run):
    """--fuse on the CPU (the default on CUDA): one row per seed, the same run ids and identity, the
    same accuracies as an evaluation without it (fp64: far from any rounding tie). The runs are the
    selftest's fused check (the tiny profile, seeds 1 and 2, fp64, --fuse against --no-fuse --jobs 2),
    whose files it keeps."""
    out = {}
    for fuse, check in ((True, "fused"), (False, "separate")):
        cwd = selftest_run.work / check
        assert ("2 runs trained fused" in (cwd / "output.txt").read_text()) == fuse
        out[fuse] = pd.read_csv(cwd / "leaderboard-tiny.csv")
        for run_id in out[fuse]["run_id"]:
            settings = json.loads((cwd / "runs" / run_id / "settings.json").read_text())
            assert settings["fused"] == fuse and settings["precision"] == "fp64"
    a, b = (out[f].sort_values("seed").reset_index(drop=True) for f in (True, False))  # --jobs 2: in order of ending
    same = [
        "kind",
        "submission",
        "submission_sha256",
        "profile",
        "phase",
        "topology",
        "arch",
        "seed",
        "attempt",
        "precision",
        "compile",
        "deterministic",
        "run_id",
        "status",
        "best_fine_acc",
        "best_epoch",
        "final_fine_acc",
        "best_coarse_acc",
    ]
    assert len(a) == 2 and a[same].equals(b[same])
    assert set(a["float32_math"]) == set(b["float32_math"]) == {"ieee"}  # a CPU has no TF32
