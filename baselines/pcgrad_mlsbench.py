"""PCGrad exactly as the benchmark task's published PCGrad row was produced: the fill of the task's
``MultiTaskLoss`` (after Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020),
which trains no coarse head. For correct PCGrad see ``pcgrad.py``.

The published fill collects its parameters once by walking ``fine_loss``'s autograd graph: the
backbone and the fine head; the coarse head is not in that graph, so it is not in the list. Per
step, over that list, ``g0 = grad(fine_loss)`` and ``g1 = grad(coarse_loss)`` (zero on the fine
head). If ``g0 . g1 < 0``: ``g0' = g0 - (g0.g1) / (|g1|^2 + 1e-12) g1`` and
``g1' = g1 - (g0.g1) / (|g0|^2 + 1e-12) g0``, else unchanged; every parameter in the list gets
``g0' + g1'``, and the coarse head gets no gradient at all: it keeps its initial weights for the
whole run (no weight decay, no momentum step).

Through this interface: ``g0 . g1`` is ``G[0][1]`` (the coarse gradient is zero off the backbone),
``|g1|^2`` is ``G[1][1]`` and ``|g0|^2`` is ``G[0][0]`` plus the fine head's squared gradient norm
(``head_sq_norms[0]``). The backbone gets ``w_fine g_fine + w_coarse g_coarse`` with
``w_fine = 1 - G01 / (|g0|^2 + 1e-12)`` and ``w_coarse = 1 - G01 / (G11 + 1e-12)`` under conflict,
else (1, 1); the fine head gets ``w_fine`` times its gradient and the coarse head nothing
(``head_loss`` uses only ``fine_loss``). In the other topologies the same holds: what the
fill's list holds is exactly what ``fine_loss`` reaches. ``tests/test_published_reproductions.py``
trains this file through the harness and the fill as published (graph walk included) in one
process (float64, two epochs) and compares every parameter.
"""

import torch
import torch.nn as nn

EPS = 1e-12


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.fine_head_weight = 1.0

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian, head_sq_norms):
        g = gramian.detach()
        dot = g[0, 1]
        sq_fine = g[0, 0] + head_sq_norms.detach()[0]  # |g0|^2: the backbone and the fine head
        sq_coarse = g[1, 1]  # |g1|^2: zero on the fine head
        w_fine, w_coarse = torch.ones((), dtype=g.dtype), torch.ones((), dtype=g.dtype)
        if dot < 0:
            w_fine = 1 - dot / (sq_fine + EPS)
            w_coarse = 1 - dot / (sq_coarse + EPS)
        self.fine_head_weight = w_fine
        return w_fine * fine_loss + w_coarse * coarse_loss

    def head_loss(self, fine_loss, coarse_loss):
        """The fine head gets ``g0' + g1'`` there, ``w_fine`` times its gradient; the coarse head,
        not in the published fill's parameter list, gets no gradient."""
        return self.fine_head_weight * fine_loss
