"""The protocol's speed options, exercised through ``run_one`` on the CPU: torch.compile (on a
toy backbone, so that the inductor compile takes seconds, not minutes), bfloat16 autocast and the
determinism switch. The CUDA side of each (cuDNN flags, GPU autocast) needs a GPU: not in CI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from helpers import BASELINES, harness, run_spec, tiny_profile

from harness.isolation.sandbox import get_sandbox
from harness.training.device import autocast_context, set_determinism
from harness.training.models import build_model, get_arch, register_arch
from harness.training.trainer import run_one

TOY = "toy_cnn_for_tests"
try:
    get_arch(TOY)
except Exception:  # noqa: BLE001  (not registered yet in this process)

    @register_arch(TOY, feature_dim=8)
    def _toy() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )


def _run(tmp_path, tiny_splits, name, **options):
    train, test = tiny_splits
    spec = run_spec(tiny_profile(epochs=2), arch=TOY, submission="pcgrad.py").model_copy(update=options)
    outcome = run_one(
        spec,
        submission=BASELINES / "pcgrad.py",
        train=train,
        test=test,
        run_dir=tmp_path / name,
        sandbox=get_sandbox("none"),
    )
    assert outcome.result.status == "ok", outcome.result.reason
    return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tmp_path, tiny_splits):
    """The Gramian path (two backward passes through one graph) through torch.compile."""
    eager = _run(tmp_path, tiny_splits, "eager")
    compiled = _run(tmp_path, tiny_splits, "compiled", compile=True)
    for a, b in zip(eager, compiled):
        for key in ("train_fine_loss", "train_coarse_loss", "weight_fine", "weight_coarse", "test_fine_loss"):
            assert abs(a[key] - b[key]) <= 1e-3 * max(1.0, abs(a[key])), (key, a[key], b[key])


@pytest.mark.slow
def test_bf16_autocast_computes_the_forward_in_bfloat16_and_trains(tmp_path, tiny_splits):
    model = build_model("resnet20")
    x = torch.randn(2, 3, 32, 32)
    with autocast_context("bf16", "cpu"):
        fine, coarse = model(x)
    assert fine.dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.float32
    with autocast_context("fp32", "cpu"):
        assert model(x)[0].dtype == torch.float32
    metrics = _run(tmp_path, tiny_splits, "bf16", precision="bf16")
    assert all(torch.isfinite(torch.tensor(m["train_fine_loss"])) for m in metrics)


def test_determinism_switch(tmp_path):
    try:
        set_determinism(True, torch.device("cpu"))
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        set_determinism(False, torch.device("cpu"))
    assert not torch.are_deterministic_algorithms_enabled()


def test_tf32_is_refused_off_cuda(tmp_path):
    r = harness(
        "evaluate",
        BASELINES / "equal_weighting.py",
        "--profile",
        "tiny",
        "--device",
        "cpu",
        "--precision",
        "tf32",
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "--precision tf32 needs a CUDA device" in r.stdout + r.stderr
    assert not (tmp_path / "leaderboard-tiny.csv").exists()
