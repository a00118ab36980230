"""PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020), through the Gramian.

For two tasks with gradients g_f, g_c over the shared backbone: if they conflict
(``<g_f, g_c> < 0``) each is projected onto the normal plane of the other,
``g_f' = g_f - <g_f, g_c>/|g_c|^2 g_c`` and ``g_c' = g_c - <g_c, g_f>/|g_f|^2 g_f``, and the
update is ``g_f' + g_c'``. (With two tasks the random order of the paper does not matter:
each is projected against the other's original gradient.) That is the weighting
``w_f = 1 - G01/G00``, ``w_c = 1 - G01/G11`` when G01 < 0, else (1, 1); no normalisation
(the sum, as in the paper). The task heads receive their own task's unweighted gradient
(``head_loss``), as in the official code: the surgery is on the shared parameters only.
"""

import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        g = gramian.detach()
        w_fine, w_coarse = torch.ones(()), torch.ones(())
        if g[0, 1] < 0 and g[0, 0] > 0 and g[1, 1] > 0:
            w_fine = 1 - g[0, 1] / g[0, 0]
            w_coarse = 1 - g[0, 1] / g[1, 1]
        return w_fine * fine_loss + w_coarse * coarse_loss

    def head_loss(self, fine_loss, coarse_loss):
        """The task heads: each gets its own task's unweighted gradient."""
        return fine_loss + coarse_loss
