"""Random loss weighting (Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus
Test for Multi-Task Learning", TMLR 2022).

Every step draws ``w = K * softmax(z)``, ``z ~ N(0, I_2)``, K = 2 (weights sum to 2, the scale
of equal weighting). Seeded: the worker seeds torch with the run's seed, so a run's weights
are reproducible.
"""

import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        w = 2 * torch.softmax(torch.randn(2), dim=0)
        return w[0] * fine_loss + w[1] * coarse_loss
