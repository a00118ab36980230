"""Prints ~20 MB while it is built: it must reach neither the host's disk (Docker's engine log) nor
the run's worker log beyond its cap."""
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        line = "x" * 1000
        for _ in range(20_000):
            print(line)

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return fine_loss + coarse_loss
