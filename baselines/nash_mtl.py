"""Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022), through the
Gramian.

Nash-MTL updates along ``a_f g_f + a_c g_c`` where ``a > 0`` solves the bargaining condition
``G a = 1 / a`` (element-wise), so that every task's directional derivative is inversely
proportional to its weight. The official code solves it by up to 20 sequential convex
(CCP/cvxpy) iterations; it divides the Gramian by its Frobenius norm for conditioning but puts the
factor back into the constraint (``a_k * |G|_F * (G / |G|_F a)_k >= 1``), so the solution is that of
G itself. For two tasks the condition has a closed form, used here:
``a_f = sqrt(n_c / (n_f (n_f n_c + G_fc)))``, ``a_c = a_f n_f / n_c`` with ``n_k = sqrt(G_kk)``.
(The iterative solver starts from (1, 1) and, when that start is infeasible because the gradients
conflict, can stop at a point that violates the condition; the closed form cannot.)

Normalisation, as in the official code (``max_norm = 1.0``): after backpropagating
``sum_k a_k L_k`` it clips the norm of the shared parameters' gradient to 1 (``clip_grad_norm_``: the factor
``1 / (norm + 1e-6)`` where below 1), so the backbone gets ``a_k`` scaled by that factor for
``norm = sqrt(a^T G a)`` (at the solution ``a^T G a = K = 2``: the clip is always active), while the
task heads keep the unclipped ``a_k`` times their own gradient
(``head_loss``). Weights are recomputed every step (``update_weights_every = 1``). Where the
gradients are exactly opposed or one is zero the condition has no solution and the weights fall
back to (1, 1) before the clip.
"""

import math

import torch.nn as nn

MAX_NORM = 1.0
CLIP_EPS = 1e-6  # clip_grad_norm_ divides by (norm + 1e-6)


def _nash_weights(g00, g01, g11):
    """``(clipped, unclipped)`` weights: the backbone's and the heads'."""
    a = (1.0, 1.0)
    if g00 > 0 and g11 > 0:
        n_f, n_c = math.sqrt(g00), math.sqrt(g11)
        agreement = n_f * n_c + g01  # > 0 unless the gradients are exactly opposed
        if agreement > 1e-12 * n_f * n_c:
            a_f = math.sqrt(n_c / (n_f * agreement))
            a = (a_f, a_f * n_f / n_c)
    norm = math.sqrt(max(a[0] * a[0] * g00 + 2 * a[0] * a[1] * g01 + a[1] * a[1] * g11, 0.0))
    clip = MAX_NORM / (norm + CLIP_EPS)  # torch.nn.utils.clip_grad_norm_'s coefficient
    clipped = (a[0] * clip, a[1] * clip) if clip < 1.0 else a
    return clipped, a


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.alpha = (1.0, 1.0)  # this step's unclipped weights, for the heads

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        g = gramian.detach().double()
        (w_fine, w_coarse), self.alpha = _nash_weights(float(g[0, 0]), float(g[0, 1]), float(g[1, 1]))
        return w_fine * fine_loss + w_coarse * coarse_loss

    def head_loss(self, fine_loss, coarse_loss):
        """The task heads: the unclipped weights (the official code clips the shared gradient only)."""
        return self.alpha[0] * fine_loss + self.alpha[1] * coarse_loss
