"""Raises in its second epoch in the run whose seed is 123 only (the worker seeds torch with the
run's seed): fused with the others, that seed fails and they go on."""
import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.fails = torch.initial_seed() == 123

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        if self.fails and epoch == 1:
            raise ValueError("this seed's loss gives up in epoch 1")
        return fine_loss + coarse_loss
