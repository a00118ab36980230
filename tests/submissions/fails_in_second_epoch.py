"""Trains normally through epoch 0, then raises in epoch 1 (after the first checkpoint)."""
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        if epoch == 1:
            raise ValueError("deliberate failure in the second epoch")
        return fine_loss + coarse_loss
