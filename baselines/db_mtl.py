"""DB-MTL (Lin et al., "Dual-Balancing Multi-Task Learning", 2023), through the Gramian.

Loss-scale balancing: each task loss is log-transformed, ``log(L_k + 1e-8)``. Gradient-magnitude
balancing: the gradients of the log losses over the shared backbone, ``h_k = g_k / (L_k + 1e-8)``,
are each scaled to the largest of their norms, and the update is ``sum_k (max_j |h_j| / |h_k|) h_k``.
With ``|h_k| = sqrt(G_kk) / (L_k + 1e-8)`` this is the loss ``sum_k alpha_k log(L_k + 1e-8)`` with
the detached weights ``alpha_k = max_j |h_j| / |h_k|`` (up to the 1e-8 below).

Approximation: LibMTL's DB-MTL keeps an exponential moving average of the gradient vectors
(beta = 0.9) and normalises the averaged vectors. An average of past gradients cannot be expressed
as a weighting of the current two gradients, so this file uses the current batch's gradients
(beta = 0). The task heads receive the unscaled gradient of their own log loss,
``grad L_k / (L_k + 1e-8)`` (``head_loss``), as in LibMTL, where only the shared gradients are
balanced.

Normalisation: none beyond the method's own (each balanced gradient has the largest norm), with
LibMTL's ``alpha_k = max_j |h_j| / (|h_k| + 1e-8)``.
"""

import math

import torch
import torch.nn as nn

EPS = 1e-8


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        g = gramian.detach().double()
        losses = (float(fine_loss.detach()) + EPS, float(coarse_loss.detach()) + EPS)
        norms = [math.sqrt(max(float(g[k, k]), 0.0)) / losses[k] for k in range(2)]
        top = max(norms)
        alpha = [top / (n + EPS) for n in norms]  # LibMTL: u_grad.max() / (u_grad + 1e-8)
        return alpha[0] * torch.log(fine_loss + EPS) + alpha[1] * torch.log(coarse_loss + EPS)

    def head_loss(self, fine_loss, coarse_loss):
        """The task heads: the gradients of the log losses, not balanced."""
        return torch.log(fine_loss + EPS) + torch.log(coarse_loss + EPS)
