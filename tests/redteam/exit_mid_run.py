"""Exits the worker abruptly in the middle of training (it tells the check's probe calls apart by the
steps per epoch they report, as hang_after_check.py does)."""
import os

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, steps_per_epoch):
        self.calls += 1
        if steps_per_epoch < 5 and self.calls > 2:
            os._exit(3)
        return fine_loss + coarse_loss
