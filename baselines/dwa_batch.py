"""Dynamic Weight Average, per-batch variant (after Liu et al., CVPR 2019).

As ``dwa.py`` but the loss ratios are those of consecutive training batches,
``r_k = L_k(step - 1) / L_k(step - 2)``, with T = 2 and K = 2; uniform weights (1, 1) during
epoch 0 (and until two batches have been seen).
"""

import math

import torch.nn as nn

TEMPERATURE = 2.0


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.history = []  # (fine, coarse) loss values of the previous batches, at most 2

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        if epoch == 0 or len(self.history) < 2:
            w_fine, w_coarse = 1.0, 1.0
        else:
            (f2, c2), (f1, c1) = self.history
            exps = [math.exp((f1 / f2) / TEMPERATURE), math.exp((c1 / c2) / TEMPERATURE)]
            w_fine, w_coarse = 2 * exps[0] / sum(exps), 2 * exps[1] / sum(exps)
        self.history = (self.history + [(float(fine_loss.detach()), float(coarse_loss.detach()))])[-2:]
        return w_fine * fine_loss + w_coarse * coarse_loss
