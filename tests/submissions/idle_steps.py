"""Equal weighting that waits 1.5 s in each training step of the second epoch on the tiny data (the
selftest profile: 4 steps per epoch; the check's probe reports 6 or more), sleeping, not computing: a
run stays in its second epoch, after its first epoch's checkpoint, long enough for a test to kill or
interrupt it there, while the CPU goes to the other tests."""

import time

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, steps_per_epoch):
        if steps_per_epoch < 5 and epoch >= 1:
            time.sleep(1.5)
        return fine_loss + coarse_loss
