"""IMTL-G (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021), through the Gramian.

IMTL-G picks weights ``a`` (summing to 1) such that the update ``g = a_f g_f + a_c g_c`` has
equal projections on every task's unit gradient: ``<g, u_f> = <g, u_c>`` with
``u_k = g_k / |g_k|``. For two tasks the paper's closed form
``a_c = <g_f, u_f - u_c> / <g_f - g_c, u_f - u_c>`` becomes, with ``n_k = sqrt(G_kk)``,
``a_c = (n_f - G_fc / n_c) / (n_f + n_c - G_fc / n_c - G_fc / n_f)`` and ``a_f = 1 - a_c``.
(Equivalently ``a`` is proportional to ``G^-1 (n_f, n_c)``.) This is the gradient part of IMTL
only; the loss-scale part (IMTL-L) is not included.

Normalisation: the paper's weights sum to 1; here they are multiplied by K = 2 so that they sum
to 2, the scale of equal weighting. Where the gradients are parallel (the system is singular)
or a gradient is zero, the weights fall back to (1, 1).

Heads: the weights apply to the shared backbone's gradients; each task head receives its own
task's unweighted gradient (``head_loss``), as in LibMTL's IMTL and TorchJD's ``mtl_backward`` (the
paper's authors released no code).
"""

import math

import torch.nn as nn


def _imtl_g_weights(g00, g01, g11):
    if g00 <= 0 or g11 <= 0:
        return 1.0, 1.0
    n_f, n_c = math.sqrt(g00), math.sqrt(g11)
    numerator = n_f - g01 / n_c
    denominator = n_f + n_c - g01 / n_c - g01 / n_f
    if denominator <= 1e-12 * (n_f + n_c):  # parallel gradients: every weighting is impartial
        return 1.0, 1.0
    a_c = numerator / denominator
    return 2 * (1 - a_c), 2 * a_c


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        g = gramian.detach().double()
        w_fine, w_coarse = _imtl_g_weights(float(g[0, 0]), float(g[0, 1]), float(g[1, 1]))
        return w_fine * fine_loss + w_coarse * coarse_loss

    def head_loss(self, fine_loss, coarse_loss):
        """The task heads: each gets its own task's unweighted gradient."""
        return fine_loss + coarse_loss
