"""GradVac (Wang et al., ICLR 2021), whole-model variant, ported from LibMTL's weighting/GradVac.py.

LibMTL's weightings take their inputs as **kwargs; the port keeps that habit and reads the Gramian
with kwargs.get('gramian', None), falling back to the plain sum when it is missing.
"""

import random

import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self, GradVac_beta=0.5):
        super().__init__()
        self.beta = GradVac_beta
        self.rho_T = torch.zeros(2, 2)  # EMA of the gradient cosines (LibMTL: self.rho_T)
        self.n_updates = 0

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, **kwargs):
        gramian = kwargs.get("gramian", None)
        losses = torch.stack([fine_loss, coarse_loss])
        if gramian is None:
            return losses.sum()
        G = gramian.detach()
        norms = G.diagonal().clamp_min(1e-20).sqrt()
        # pc_grads[i] = grads[i] + sum_j w_ij grads[j], as coefficients on the two task gradients
        coef = torch.eye(2, dtype=G.dtype)
        for tn_i in range(2):
            task_index = list(range(2))
            task_index.remove(tn_i)
            random.shuffle(task_index)
            for tn_j in task_index:
                gi = coef[tn_i]
                gi_gj = gi @ G[:, tn_j]
                gi_norm = (gi @ G @ gi).clamp_min(1e-20).sqrt()
                rho_ij = gi_gj / (gi_norm * norms[tn_j])
                if rho_ij < self.rho_T[tn_i, tn_j]:
                    rho_T = self.rho_T[tn_i, tn_j]
                    w = gi_norm * (rho_T * (1 - rho_ij**2).sqrt() - rho_ij * (1 - rho_T**2).sqrt()) / (
                        norms[tn_j] * (1 - rho_T**2).sqrt()
                    )
                    coef[tn_i, tn_j] += w
                self.rho_T[tn_i, tn_j] = (1 - self.beta) * self.rho_T[tn_i, tn_j] + self.beta * rho_ij
        self.n_updates += 1
        weights = coef.sum(0)  # new_grads = sum_i pc_grads[i]
        return (weights * losses).sum()
