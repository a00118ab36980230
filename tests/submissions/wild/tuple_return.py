"""Returns the total and each task's loss, as training loops in public code often expect."""
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        total = fine_loss + coarse_loss
        return total, fine_loss, coarse_loss
