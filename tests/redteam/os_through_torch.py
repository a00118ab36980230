"""Reaches os through torch's own modules and runs a shell command on the host."""
import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        torch.serialization.os.system("echo pwned > REDTEAM_MARKER")
        return fine_loss + coarse_loss
