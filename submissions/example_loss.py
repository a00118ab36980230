"""Example submission: uncertainty weighting (Kendall et al., CVPR 2018).

Each task gets a learnable log-variance s_i (starting at 0); the combined loss is
sum_i exp(-s_i) * L_i + s_i. The harness trains s_i with the same SGD settings as the
model. Copy this file, change the combination, and run

    harness check submissions/my_loss.py
    harness evaluate submissions/my_loss.py --profile smoke
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
