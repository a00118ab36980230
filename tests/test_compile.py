"""``--compile`` keeps the exactness guarantees and never lies: a head the loss leaves out gets no
gradient under torch.compile either (CPU backends: aot_eager; inductor in the slow tier), and
several architectures compiled one after another in one process each run compiled (a row that
says compile=true ran compiled), checked by a backend that counts the calls of what it compiled."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from helpers import BASELINES, SUBMISSIONS, run_spec, tiny_profile

from harness.isolation.sandbox import get_sandbox
from harness.training import compiled
from harness.training.models import build_model, get_arch, load_hidden_archs, register_arch
from harness.training.trainer import run_one

TOY = "toy_cnn_for_compile_tests"
try:
    get_arch(TOY)
except Exception:  # noqa: BLE001  (not registered yet in this process)

    @register_arch(TOY, feature_dim=8)
    def _toy() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )


def _train(
    tmp_path, splits, name, *, arch=TOY, submission=SUBMISSIONS / "warmup_ignores_coarse.py", profile=None, **options
):
    train, test = splits
    spec = run_spec(profile or tiny_profile(), arch=arch, submission=submission.name).model_copy(update=options)
    outcome = run_one(
        spec, submission=submission, train=train, test=test, run_dir=tmp_path / name, sandbox=get_sandbox("none")
    )
    assert outcome.result.status == "ok", outcome.result.reason
    return outcome


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_a_head_the_loss_leaves_out_gets_no_gradient_under_compile(tmp_path, tiny_splits, monkeypatch, backend):
    """The loss ignores the coarse task for the run's only epoch: its head must keep its initial
    weights bit for bit (no weight decay, no momentum), as eager training leaves it."""
    monkeypatch.setattr(compiled, "BACKEND", backend)
    eager = _train(tmp_path, tiny_splits, "eager").model.state_dict()
    got = _train(tmp_path, tiny_splits, "compiled", compile=True).model.state_dict()
    torch.manual_seed(42)
    initial = build_model(TOY).state_dict()
    for key in ("coarse_head.weight", "coarse_head.bias"):
        assert torch.equal(got[key], initial[key]), key
        assert torch.equal(eager[key], initial[key]), key
    for key in ("fine_head.weight", "backbone.0.weight"):  # the rest trained, as the eager run did
        assert not torch.equal(got[key], initial[key]), key
        torch.testing.assert_close(got[key], eager[key], rtol=1e-4, atol=1e-6)


class CountingBackend:
    """A torch.compile backend that runs each graph as traced and counts the calls of what it
    compiled: a forward that ran eagerly (dynamo fell back) is not counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs):
        def run(*args):
            self.calls += 1
            return gm.forward(*args)

        return run


@pytest.mark.slow
def test_several_architectures_in_one_process_each_run_compiled(tmp_path, tiny_splits, monkeypatch):
    """The issue's scenario at tiny sizes: a module that asks for previous_losses_after_update (a
    second, no-gradient forward pass per step), resnet20, resnet56 and vgg16bn one after another in
    one process. Before, the third architecture found dynamo's recompile budget spent and its
    evaluation ran eagerly under compile=true. Every forward call of every run must be a call of a
    compiled graph: train steps, the after-update passes, the test batches."""
    load_hidden_archs()
    backend = CountingBackend()
    monkeypatch.setattr(compiled, "BACKEND", backend)
    train, test = tiny_splits
    splits = (train.head(64), test.head(40))
    profile = tiny_profile(batch_size=32, eval_batch_size=20)
    expected = 2 * 2 + 2  # 2 steps, each with its after-update pass; 2 test batches
    for arch in ("resnet20", "resnet56", "vgg16bn"):
        before = backend.calls
        _train(tmp_path, splits, arch, arch=arch, submission=BASELINES / "famo.py", profile=profile, compile=True)
        assert backend.calls - before == expected, arch


def test_a_compiled_run_that_would_fall_back_to_eager_fails_instead(tmp_path, tiny_splits, monkeypatch):
    """With the recompile budget at 1, the no-gradient after-update pass needs a second variant of
    the forward: dynamo would run it eagerly while the row says compile=true; the run fails instead,
    and says why."""
    monkeypatch.setattr(compiled, "BACKEND", "eager")
    train, test = tiny_splits
    spec = run_spec(tiny_profile(), arch=TOY, submission="famo.py").model_copy(update={"compile": True})
    # torch's own patch, not monkeypatch: pytest >= 9.2 undoes a module attribute that is not in the
    # module's __dict__ by deleting it, which hides torch's config entry for the rest of the process
    with torch._dynamo.config.patch(recompile_limit=1):
        outcome = run_one(
            spec,
            submission=BASELINES / "famo.py",
            train=train,
            test=test,
            run_dir=tmp_path / "r",
            sandbox=get_sandbox("none"),
        )
    assert outcome.result.status == "failed"
    assert "recompile_limit" in outcome.result.reason, outcome.result.reason
    assert "recompile_limit" in (tmp_path / "r" / "failure.txt").read_text()
