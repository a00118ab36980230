"""IMTL (Liu et al., ICLR 2021), ported from LibMTL's weighting/IMTL.py: IMTL-L's learnable loss
scale and IMTL-G's closed-form weights, written for two tasks from the Gramian.

The loss scale was ported in a hurry as a plain tensor that requires grad (LibMTL makes it an
nn.Parameter in init_param); nothing trains it until it is wrapped.
"""

import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self, task_num=2, device="cpu"):
        super().__init__()
        self.task_num = task_num
        self.device = device
        self.loss_scale = torch.tensor([0.0] * self.task_num, device=self.device, requires_grad=True)

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        losses = torch.stack([fine_loss, coarse_loss])
        losses = self.loss_scale.exp() * losses - self.loss_scale
        scale = self.loss_scale.detach().exp()
        G = gramian * torch.outer(scale, scale)  # the scaled losses' gradients
        norms = G.diagonal().clamp_min(1e-20).sqrt()
        g0_U = G[0, 0] / norms[0] - G[0, 1] / norms[1]  # grads[0] @ U.t()
        D_U = g0_U - (G[0, 1] / norms[0] - G[1, 1] / norms[1])  # D @ U.t()
        alpha = g0_U / D_U if D_U.abs() > 1e-12 else torch.tensor(0.5)
        alpha = torch.stack([1 - alpha, alpha])
        return (alpha.detach() * losses).sum()
