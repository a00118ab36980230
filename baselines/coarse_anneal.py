"""Control: the coarse task as a curriculum, its weight decaying over training.

``L = L_fine + w(epoch) * L_coarse`` with ``w = 0.5 * (1 + cos(pi * epoch / total_epochs))``:
1 at the start, 0.5 halfway, approaching 0 at the end.
"""

import math

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        w_coarse = 0.5 * (1.0 + math.cos(math.pi * epoch / total_epochs))
        return fine_loss + w_coarse * coarse_loss
