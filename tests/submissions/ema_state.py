"""Keeps state in a buffer (an EMA of the losses), plain attributes and a learnable parameter."""

import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.register_buffer("ema", torch.zeros(2))
        self.calls = 0
        self.first = []
        self.flag = True  # not a number: left out

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        self.calls += 1
        losses = torch.stack([fine_loss, coarse_loss]).detach()
        if not self.first:
            self.first = losses.tolist()
        self.ema.mul_(0.9).add_(0.1 * losses)
        return (torch.exp(-self.w) * torch.stack([fine_loss, coarse_loss])).sum() + self.w.sum()
