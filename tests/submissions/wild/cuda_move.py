"""An unguarded move to CUDA: it cannot work where the loss runs."""

import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return (fine_loss + coarse_loss).to(torch.device("cuda:0"))
