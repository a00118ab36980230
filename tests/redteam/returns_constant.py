"""Returns a learnable constant: differentiable, but independent of the losses."""
import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Parameter(torch.ones(()))

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return self.c * 1.0
