import pytest
import torch
from helpers import BASELINES, run_spec, tiny_profile

from harness.isolation.sandbox import get_sandbox
from harness.training.trainer import run_one

pytestmark = pytest.mark.slow  # trains twice


def _train(seed, tiny_splits, run_dir):
    train, test = tiny_splits
    return run_one(
        run_spec(tiny_profile(epochs=2), seed=seed),
        submission=BASELINES / "uncertainty.py",
        train=train,
        test=test,
        run_dir=run_dir,
        sandbox=get_sandbox("none"),
    )


def test_same_seed_same_weights_other_seed_different(tiny_splits, tmp_path):
    a = _train(42, tiny_splits, tmp_path / "a")
    b = _train(42, tiny_splits, tmp_path / "b")
    c = _train(123, tiny_splits, tmp_path / "c")
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    assert [m.test_fine_acc for m in a.history] == [m.test_fine_acc for m in b.history]
    assert [m.train_fine_loss for m in a.history] == [m.train_fine_loss for m in b.history]
    assert a.loss_state == b.loss_state
    assert not torch.equal(
        a.model.state_dict()["backbone.body.0.weight"], c.model.state_dict()["backbone.body.0.weight"]
    )
    assert [m.train_fine_loss for m in a.history] != [m.train_fine_loss for m in c.history]
