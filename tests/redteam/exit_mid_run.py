"""Exits the worker abruptly in the middle of training."""
import os

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        self.calls += 1
        if total_epochs != 4 and self.calls > 2:
            os._exit(3)
        return fine_loss + coarse_loss
