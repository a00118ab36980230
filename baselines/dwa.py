"""Dynamic Weight Average (Liu, Johns and Davison, "End-to-End Multi-Task Learning with
Attention", CVPR 2019).

``w_k(t) = K * exp(r_k(t-1) / T) / sum_i exp(r_i(t-1) / T)`` with ``r_k(t-1) = L_k(t-1) / L_k(t-2)``,
where ``L_k(t)`` is task k's training loss averaged over epoch t, T = 2 and K = 2 tasks. The
first two epochs use uniform weights (1, 1). Epoch averages are accumulated from the loss
values this module sees, so the state is plain Python kept between calls.
"""

import math

import torch.nn as nn

TEMPERATURE = 2.0


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.sums = {}  # epoch -> [sum of fine losses, sum of coarse losses, count]

    def weights(self, epoch):
        if epoch < 2 or epoch - 1 not in self.sums or epoch - 2 not in self.sums:
            return 1.0, 1.0
        prev, prev2 = self.sums[epoch - 1], self.sums[epoch - 2]
        ratios = [(prev[i] / prev[2]) / (prev2[i] / prev2[2]) for i in range(2)]
        exps = [math.exp(r / TEMPERATURE) for r in ratios]
        return 2 * exps[0] / sum(exps), 2 * exps[1] / sum(exps)

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        acc = self.sums.setdefault(epoch, [0.0, 0.0, 0])
        acc[0] += float(fine_loss.detach())
        acc[1] += float(coarse_loss.detach())
        acc[2] += 1
        w_fine, w_coarse = self.weights(epoch)
        return w_fine * fine_loss + w_coarse * coarse_loss
