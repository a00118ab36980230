"""Dynamic Weight Average, per batch, exactly as the benchmark task's published DWA row was produced
(after Liu et al., "End-to-End Multi-Task Learning with Attention", CVPR 2019).

The published fill of the task's ``MultiTaskLoss`` keeps the previous call's detached losses. While
``epoch == 0`` (or on the very first call) the weights are (1, 1); otherwise the ratios are this
batch's losses over the previous call's, ``r_k = L_k(now) / (L_k(previous call) + 1e-8)``, and the
weights ``2 * softmax(r / 2)`` (T = 2, K = 2: they sum to 2, the scale of equal weighting). The
previous losses are overwritten on every call, epoch 0 included, so the first call of epoch 1
compares with the last batch of epoch 0. Returns ``sum_k w_k L_k`` (the heads are weighted too).

This is not the paper's DWA, which compares epoch-averaged losses of the two previous epochs: that
is ``dwa.py``. ``tests/test_published_reproductions.py`` trains this file through the harness and
the fill as published in one process (float64, two epochs) and compares every parameter.
"""

import torch
import torch.nn as nn

TEMPERATURE = 2.0
EPS = 1e-8


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.prev = None  # the previous call's detached losses (fine, coarse)

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        now = torch.stack([fine_loss.detach(), coarse_loss.detach()])
        if self.prev is None or epoch == 0:
            weights = torch.ones(2, dtype=now.dtype)
        else:
            weights = 2 * torch.softmax(now / (self.prev + EPS) / TEMPERATURE, dim=0)
        self.prev = now
        return weights[0] * fine_loss + weights[1] * coarse_loss
