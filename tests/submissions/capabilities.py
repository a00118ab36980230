"""Asks for every optional input and checks that each one is sensible."""
import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, step, steps_per_epoch,
                batch_fine_acc, batch_coarse_acc, unused_optional=None):
        assert isinstance(step, int) and isinstance(steps_per_epoch, int)
        assert epoch == step // steps_per_epoch, (epoch, step, steps_per_epoch)
        assert 0.0 <= batch_fine_acc <= 1.0 and 0.0 <= batch_coarse_acc <= 1.0
        return fine_loss + (0.5 + 0.5 * batch_coarse_acc) * coarse_loss
