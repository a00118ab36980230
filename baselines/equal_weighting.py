"""Equal weighting: the plain sum of the task losses, ``L = L_fine + L_coarse``.

The default baseline of the task's protocol. Weights (1, 1).
"""

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return fine_loss + coarse_loss
