"""A head loss without the Gramian (the per-task path on its own), leaving the coarse head out on
odd steps while the shared loss uses both tasks."""
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.odd = False

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, step):
        self.odd = step % 2 == 1
        return 0.7 * fine_loss + 1.3 * coarse_loss

    def head_loss(self, fine_loss, coarse_loss):
        return fine_loss * 2.0 if self.odd else fine_loss + 0.5 * coarse_loss
