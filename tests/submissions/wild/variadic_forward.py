"""A weighting module from public code: forward takes any number of losses."""
import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self, n_losses=2):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(n_losses))

    def forward(self, *losses):
        if len(losses) != 2:  # the epoch must never arrive among the losses
            raise ValueError(f"expected the two task losses, got {len(losses)} values")
        total = 0
        for i, loss in enumerate(losses):
            total = total + torch.exp(-self.log_vars[i]) * loss + self.log_vars[i]
        return total
