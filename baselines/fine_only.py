"""Control: the fine task alone (coarse weight 0). Does the auxiliary coarse task help at all?

``L = L_fine + 0 * L_coarse``: the coarse head receives no gradient and the backbone learns
from the fine labels only.
"""

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return fine_loss + 0.0 * coarse_loss
