"""Control: the fine task alone (coarse weight 0). Does the auxiliary coarse task help at all?

``L = L_fine + 0 * L_coarse``: the backbone learns from the fine labels only. The coarse head
gets a zero loss gradient (the coarse loss is still part of the graph), so it changes only through
weight decay, as it would in one process.
"""

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return fine_loss + 0.0 * coarse_loss
