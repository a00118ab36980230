"""UPGrad (Quinton and Rey, "Jacobian Descent for Multi-Objective Optimization", 2024), through
the Gramian.

UPGrad projects each task gradient g_i onto the dual cone of the task gradients,
``{x : <x, g_j> >= 0 for all j}``, and averages the projections. In weight space the projection
of g_i is ``J^T v_i`` with ``v_i = argmin_{v >= e_i} v^T G v``; for two tasks this box-constrained
quadratic programme has an exact solution by its KKT conditions:
``v_f = (1, max(0, -G_fc / G_cc))`` and ``v_c = (max(0, -G_fc / G_ff), 1)``.
(For two tasks the projection of g_f onto the dual cone is its projection onto the normal plane
of g_c when they conflict, so UPGrad coincides with PCGrad up to the 1/K factor; it differs from
PCGrad from three tasks on.)

Normalisation: the sum of the projections, ``w = v_f + v_c`` (TorchJD's default averages them,
``(v_f + v_c) / K``), so that non-conflicting gradients get (1, 1) as in equal weighting.
TorchJD also adds a small ridge (1e-4 on the trace-normalised Gramian) before solving; this
file solves the exact problem.

Heads: the weights apply to the shared backbone's gradients; each task head receives its own
task's unweighted gradient (``head_loss``), as in the reference implementations.
"""

import torch.nn as nn


def _dual_cone_weights(g00, g01, g11):
    v_f = (1.0, max(0.0, -g01 / g11) if g11 > 0 else 0.0)
    v_c = (max(0.0, -g01 / g00) if g00 > 0 else 0.0, 1.0)
    return v_f[0] + v_c[0], v_f[1] + v_c[1]


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        g = gramian.detach().double()
        w_fine, w_coarse = _dual_cone_weights(float(g[0, 0]), float(g[0, 1]), float(g[1, 1]))
        return w_fine * fine_loss + w_coarse * coarse_loss

    def head_loss(self, fine_loss, coarse_loss):
        """The task heads: each gets its own task's unweighted gradient."""
        return fine_loss + coarse_loss
