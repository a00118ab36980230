"""Uncertainty weighting with learnable log-variances (the task card's interface)."""
import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(2))

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        losses = torch.stack([fine_loss, coarse_loss])
        return (torch.exp(-self.log_vars) * losses + self.log_vars).sum()
