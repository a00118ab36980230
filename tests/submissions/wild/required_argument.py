"""Uncertainty weighting as often written in public repositories: the number of losses is a
constructor argument (Kendall et al. 2018 style)."""
import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self, n_losses):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(n_losses))

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        losses = torch.stack([fine_loss, coarse_loss])
        return (torch.exp(-self.log_vars) * losses + self.log_vars).sum()
