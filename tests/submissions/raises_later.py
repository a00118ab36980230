"""Behaves during the interface check (which runs with seed 0), then raises on its third call,
but only in the run whose seed is 1 (the worker seeds torch with the run's seed)."""
import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        self.calls += 1
        if self.calls > 2 and torch.initial_seed() == 1:
            raise ZeroDivisionError("deliberate failure in the submission")
        return fine_loss + coarse_loss
