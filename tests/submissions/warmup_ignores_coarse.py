"""A fine-only warm-up: the coarse task is left out of the loss in epoch 0 (its head must then get
no gradient at all: no weight decay, no momentum step), then both tasks count."""
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return fine_loss if epoch == 0 else fine_loss + coarse_loss
