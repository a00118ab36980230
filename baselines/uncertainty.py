"""Uncertainty weighting (Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty to
Weigh Losses for Scene Geometry and Semantics", CVPR 2018).

Each task has a learnable log-variance ``s_i`` starting at 0, and
``L = sum_i exp(-s_i) * L_i + s_i`` (the form used for classification losses in common
reimplementations, without the 1/2 factors of the regression derivation). The ``s_i`` are
trained with the model's optimizer settings (SGD, momentum, weight decay, cosine schedule).
"""

import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(2))

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        losses = torch.stack([fine_loss, coarse_loss])
        return (torch.exp(-self.log_vars) * losses + self.log_vars).sum()
