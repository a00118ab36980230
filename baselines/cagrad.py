"""CAGrad (Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021),
through the Gramian, with c = 0.4.

With g0 = (g_f + g_c) / 2 the average gradient over the shared backbone, CAGrad finds the
convex combination ``g_x = x g_f + (1 - x) g_c`` (x in [0, 1]) that minimises
``<g_x, g0> + c |g0| |g_x|`` and updates along ``d = g0 + (c |g0| / |g_x|) g_x``.
For two tasks the minimisation is over one convex variable and has a closed form (``_argmin_x``;
the official code solves it with scipy's SLSQP, to SLSQP's tolerance). Everything is a function
of the Gramian: ``<g_x, g0> = x^T G (1/2, 1/2)``, ``|g_x|^2 = x^T G x``, ``|g0|^2 = mean(G)``.

Normalisation, as in the official code (Nash-MTL repository, ``CAGrad``): ``cagrad(rescale=1)``
divides d by ``1 + c^2`` and ``overwrite_grad`` multiplies it by the number of tasks ("to match
the sum loss"), so ``w = 2 (1/2 + lambda x) / (1 + c^2)`` with ``lambda = c |g0| / |g_x|``.
Where ``|g_x| = 0`` (already Pareto-stationary) lambda is 0.

Heads: the weights apply to the shared backbone's gradients; each task head receives its own
task's unweighted gradient (``head_loss``), as in the reference implementations.
"""

import math

import torch.nn as nn

C = 0.4


def _argmin_x(g00, g01, g11, k):
    """The x in [0, 1] minimising ``f(x) = <g_x, g0> + k |g_x|`` (f is convex), in closed form.

    With ``g_x = g_c + x d``, ``d = g_f - g_c``: ``|g_x|^2 = A x^2 + 2 B x + C2`` and
    ``f'(x) = s + k (A x + B) / |g_x|`` with ``s = <d, g0>``. Setting ``u = A x + B`` and
    ``|g_x|^2 = (u^2 + D) / A`` (``D = A C2 - B^2 >= 0``), ``f' = 0`` gives
    ``u^2 (A k^2 - s^2) = s^2 D`` with u of the sign opposite to s. Without an interior root f
    is monotone on [0, 1] and the minimum is at an end; the root is clipped to [0, 1] otherwise.
    """
    A = max(g00 - 2 * g01 + g11, 0.0)
    B, C2 = g01 - g11, g11
    s = (g00 - g11) / 2
    if A <= 1e-15 * (g00 + g11):  # g_f == g_c: every x gives the same point
        return 0.5
    D = max(A * C2 - B * B, 0.0)
    denom = A * k * k - s * s
    if denom > 0:
        u = -math.copysign(math.sqrt(s * s * D / denom), s) if s != 0 else 0.0
        return min(max((u - B) / A, 0.0), 1.0)
    return 1.0 if s < 0 else 0.0  # f' keeps the sign of s: decreasing when s < 0


def _cagrad_weights(g00, g01, g11):
    g0_norm = math.sqrt(max((g00 + 2 * g01 + g11) / 4, 0.0))
    x = _argmin_x(g00, g01, g11, C * g0_norm)
    gx_norm = math.sqrt(max(x * x * g00 + 2 * x * (1 - x) * g01 + (1 - x) ** 2 * g11, 0.0))
    lam = C * g0_norm / gx_norm if gx_norm > 1e-12 * (1.0 + g0_norm) else 0.0
    scale = 2 / (1 + C * C)
    return scale * (0.5 + lam * x), scale * (0.5 + lam * (1 - x))


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        g = gramian.detach().double()
        w_fine, w_coarse = _cagrad_weights(float(g[0, 0]), float(g[0, 1]), float(g[1, 1]))
        return w_fine * fine_loss + w_coarse * coarse_loss

    def head_loss(self, fine_loss, coarse_loss):
        """The task heads: each gets its own task's unweighted gradient."""
        return fine_loss + coarse_loss
