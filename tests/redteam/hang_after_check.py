"""Behaves during the interface check, then hangs in training: it tells the probe calls apart by the
steps per epoch they report (the tiny profile's probe reports 6 or 12, its training 3 or 4). The
per-call limit stops it. (Telling the probe apart by its epochs no longer works: the probe visits
every epoch of the profile's run; see nan_after_first_epoch.py.)"""
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, steps_per_epoch):
        if steps_per_epoch < 5:
            while True:
                pass
        return fine_loss + coarse_loss
