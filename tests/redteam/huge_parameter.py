"""Registers a 50-million-element parameter."""
import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.big = nn.Parameter(torch.zeros(50_000_000))

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return fine_loss + coarse_loss + 0 * self.big[0]
