"""Equal weighting that waits 2.5 s in each training step on the tiny data (not during the
check: its probe reports 6 or more steps per epoch), sleeping, not computing: a run lasts long enough
for the fault tests to interrupt it, while the CPU goes to the other tests."""

import time

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, steps_per_epoch):
        if steps_per_epoch < 5:  # training on the tiny data
            time.sleep(2.5)
        return fine_loss + coarse_loss
