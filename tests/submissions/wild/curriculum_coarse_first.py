"""A curriculum by absolute epoch: the coarse task alone for the first five epochs."""

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        if epoch < 5:
            return coarse_loss
        return fine_loss + 0.5 * coarse_loss
