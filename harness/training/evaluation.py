"""The test split after an epoch: :func:`evaluate` and its :class:`TestMetrics`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.errors import RunFailed
from harness.training.device import autocast_context
from harness.training.models import TwoHeadNet


@dataclass(frozen=True)
class TestMetrics:
    """The test split after an epoch: mean losses, and accuracies in percent."""

    fine_loss: float
    coarse_loss: float
    fine_acc: float
    coarse_acc: float


@torch.no_grad()
def evaluate(
    model: TwoHeadNet,
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    *,
    precision: str = "fp32",
    forward: Callable | None = None,
) -> TestMetrics:
    """The model on ``batches`` (the test split)."""
    forward = model if forward is None else forward
    model.eval()
    totals = None
    n = 0
    for x, y_fine, y_coarse in batches:
        with autocast_context(precision, x.device.type):
            fine_logits, coarse_logits = forward(x)
        fine_logits, coarse_logits = fine_logits.float(), coarse_logits.float()
        batch = torch.stack(
            [
                F.cross_entropy(fine_logits, y_fine, reduction="sum"),
                F.cross_entropy(coarse_logits, y_coarse, reduction="sum"),
                (fine_logits.argmax(1) == y_fine).sum().float(),
                (coarse_logits.argmax(1) == y_coarse).sum().float(),
            ]
        )
        totals = batch if totals is None else totals + batch
        n += y_fine.numel()
    if totals is None:
        raise RunFailed("the test split is empty")
    fine_loss, coarse_loss, fine_correct, coarse_correct = totals.tolist()
    return TestMetrics(fine_loss / n, coarse_loss / n, 100.0 * fine_correct / n, 100.0 * coarse_correct / n)
