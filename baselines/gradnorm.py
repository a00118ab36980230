"""GradNorm (Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep
Multitask Networks", ICML 2018), through the Gramian, following LibMTL's formulation.

Task weights ``w = K softmax(s)`` (K = 2, so they sum to 2; ``s`` learnable, starting at 0).
With ``G_k = w_k |g_k|`` the norm of task k's weighted gradient over the shared parameters
(``|g_k| = sqrt(G_kk)``), ``Gbar`` their mean, ``r_k = (L_k / L_k(0)) / mean_j (L_j / L_j(0))`` the
relative inverse training rate and alpha = 1.5, GradNorm minimises
``L_grad = sum_k |G_k - Gbar r_k^alpha|`` over ``s`` with the target ``Gbar r_k^alpha`` held constant.
The model is trained on ``sum_k w_k L_k`` with w detached. This file returns
``sum_k w_k.detach() L_k + L_grad``: the losses then receive the weights ``w_k`` and ``s`` receives
``dL_grad/ds``, stepped by the harness's optimizer with the model's settings (LibMTL also steps
the weights with the model's optimizer).

Mapping: as in LibMTL, ``L_k(0)`` is task k's training loss averaged over epoch 0, epoch 0 uses
equal weights (1, 1), and the gradient norms are over all shared parameters (the paper uses the
last shared layer; the Gramian covers the whole backbone).

Heads: weighted by ``w_k`` like the backbone, as in the paper (the network is trained on
``sum_k w_k L_k``; GradNorm has no official code). LibMTL's implementation leaves the heads
unweighted, a side effect of its per-task backward passes; this file follows the paper.
"""

import torch
import torch.nn as nn

ALPHA = 1.5


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.s = nn.Parameter(torch.zeros(2))
        self.first_epoch = None
        self.sums = [0.0, 0.0, 0]  # epoch-0 loss sums and batch count

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        if self.first_epoch is None:
            self.first_epoch = epoch
        if epoch == self.first_epoch:
            self.sums[0] += float(fine_loss.detach())
            self.sums[1] += float(coarse_loss.detach())
            self.sums[2] += 1
            return fine_loss + coarse_loss
        w = 2 * torch.softmax(self.s, dim=0)
        g = gramian.detach().to(w.dtype)
        norms = w * torch.diagonal(g).clamp(min=0).sqrt()
        ratios = torch.tensor(
            [
                float(fine_loss.detach()) * self.sums[2] / self.sums[0],
                float(coarse_loss.detach()) * self.sums[2] / self.sums[1],
            ],
            dtype=w.dtype,
        )
        target = (norms.mean() * (ratios / ratios.mean()) ** ALPHA).detach()
        grad_loss = (norms - target).abs().sum()
        w_fixed = w.detach()
        return w_fixed[0] * fine_loss + w_fixed[1] * coarse_loss + grad_loss
