"""Allocates 8 GiB with plain torch (passes the static check)."""
import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        hog = [torch.ones(256, 1024, 1024) for _ in range(8)]
        return fine_loss + coarse_loss + 0 * hog[0][0, 0, 0]
