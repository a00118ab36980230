"""Returns the two losses as a vector."""
import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return torch.stack([fine_loss, coarse_loss])
