"""head_loss must take (fine_loss, coarse_loss)."""
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return fine_loss + coarse_loss

    def head_loss(self, fine_loss):
        return fine_loss
