"""The per-task path with a task left out: an MGDA-style weighting from the Gramian, but the coarse
task sits out epoch 0 (its head and the backbone then get the fine task's gradient only)."""
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        if epoch == 0:
            return 1.5 * fine_loss
        g = gramian.detach().double()
        denom = float(g[0, 0] + g[1, 1] - 2 * g[0, 1])
        a = min(max(float(g[1, 1] - g[0, 1]) / denom, 0.1), 0.9) if denom > 0 else 0.5
        return 2 * a * fine_loss + 2 * (1 - a) * coarse_loss
