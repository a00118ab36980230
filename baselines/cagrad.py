"""CAGrad (Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021),
through the Gramian, with c = 0.4.

With g0 = (g_f + g_c) / 2 the average gradient over the shared backbone, CAGrad finds the
convex combination ``g_x = x g_f + (1 - x) g_c`` (x in [0, 1]) that minimises
``<g_x, g0> + c |g0| |g_x|`` and updates along ``d = g0 + (c |g0| / |g_x|) g_x``.
For two tasks the minimisation is over one convex variable and is solved here by golden-section
search to machine precision (the paper solves it with scipy's SLSQP). Everything is a function
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
GOLDEN = (math.sqrt(5) - 1) / 2


def _cagrad_weights(g00, g01, g11):
    g0_norm = math.sqrt(max((g00 + 2 * g01 + g11) / 4, 0.0))

    def gx_sq(x):  # |x g_f + (1 - x) g_c|^2
        return max(x * x * g00 + 2 * x * (1 - x) * g01 + (1 - x) ** 2 * g11, 0.0)

    def objective(x):  # <g_x, g0> + c |g0| |g_x|
        inner = (x * (g00 + g01) + (1 - x) * (g01 + g11)) / 2
        return inner + C * g0_norm * math.sqrt(gx_sq(x))

    lo, hi = 0.0, 1.0
    a, b = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    fa, fb = objective(a), objective(b)
    for _ in range(80):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - GOLDEN * (hi - lo)
            fa = objective(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + GOLDEN * (hi - lo)
            fb = objective(b)
    x = (lo + hi) / 2
    gx_norm = math.sqrt(gx_sq(x))
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
