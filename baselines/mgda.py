"""MGDA (Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018),
through the Gramian.

The update is the minimum-norm point of the convex hull of the task gradients over the
shared backbone. For two tasks it has a closed form:
``a = clip((G11 - G01) / (G00 + G11 - 2 G01), 0, 1)``, direction ``a g_f + (1 - a) g_c``.
Normalisation: the weights ``(a, 1 - a)`` are scaled by K = 2 so that they sum to 2, the scale
of equal weighting (the paper's weights sum to 1, which would halve the learning rate).
Gradients are taken over the shared parameters of the backbone, not its features (not MGDA-UB).

Heads: as in the official code (Sener and Koltun, ``train_multi_task.py``: ``loss = sum_t
scale[t] * loss_t; loss.backward()``), the heads are weighted too: this file defines no
``head_loss``. (TorchJD's ``mtl_backward`` and LibMTL give the heads unweighted gradients.)
"""

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        g = gramian.detach().double()
        denom = float(g[0, 0] + g[1, 1] - 2 * g[0, 1])
        if denom > 0:
            a = min(max(float(g[1, 1] - g[0, 1]) / denom, 0.0), 1.0)
        else:  # identical gradients: any convex combination is the same point
            a = 0.5
        return 2 * a * fine_loss + 2 * (1 - a) * coarse_loss
