"""Geometric loss strategy (Chennupati et al., "MultiNet++: Multi-Stream Feature Aggregation and
Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019).

``L = (L_fine * L_coarse) ** (1/2)``, the geometric mean of the task losses. Its gradient weights
each task by ``dL/dL_k = L / (2 L_k)``: the task with the smaller loss gets the larger weight.
"""

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return (fine_loss * coarse_loss).sqrt()
