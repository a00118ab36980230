"""Aligned-MTL (Senushkin et al., "Independent Component Alignment for Multi-Task Learning",
CVPR 2023), through the Gramian.

Aligned-MTL replaces the task gradients ``J`` (rows g_f, g_c) by ``B J``, whose rows are
orthogonal and of equal norm ``sqrt(lambda_min)``: with the eigendecomposition
``G = V diag(lambda) V^T`` restricted to its numerical rank (tolerance
``lambda_max * K * float64 eps``), ``B = sqrt(lambda_min) V diag(lambda)^(-1/2) V^T``, and the
update is the sum of the aligned gradients, ``1^T B J``. So the task weights are ``w = B 1``.

Normalisation: ``w = B 1`` as in LibMTL (the sum of the aligned gradients; equal to (1, 1) when
the gradients are already orthonormal); TorchJD's default uses the mean, ``B 1 / K``. The scale
uses the smallest eigenvalue, as in the paper. A zero Gramian gives (1, 1).

Heads: the weights apply to the shared backbone's gradients; each task head receives its own
task's unweighted gradient (``head_loss``), as in the reference implementations.
"""

import torch
import torch.nn as nn


def _aligned_weights(g):
    lam, v = torch.linalg.eigh(g)
    tol = lam.max() * len(g) * torch.finfo(torch.float64).eps
    keep = lam > tol
    if not bool(keep.any()):
        return torch.ones(2, dtype=torch.float64)
    lam, v = lam[keep], v[:, keep]
    b = lam.min().sqrt() * (v @ torch.diag(lam.rsqrt()) @ v.T)
    return b @ torch.ones(2, dtype=torch.float64)


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        w = _aligned_weights(gramian.detach().double())
        return float(w[0]) * fine_loss + float(w[1]) * coarse_loss

    def head_loss(self, fine_loss, coarse_loss):
        """The task heads: each gets its own task's unweighted gradient."""
        return fine_loss + coarse_loss
