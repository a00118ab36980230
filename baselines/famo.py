"""FAMO (Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023), as its official
code computes it.

FAMO keeps logits ``xi`` (initially 0) and task weights ``z = softmax(xi)``. The model is trained on
``sum_k z_k log L_k / c`` with ``c = sum_k z_k / L_k`` detached, i.e. task k's loss is weighted by
``z_k / (c L_k)`` (weights summing to 1). After each step the logits move so as to equalise the
tasks' rates of improvement: with ``delta_k = log L_k(before) - log L_k(after)``, the gradient
of ``xi`` is ``J_softmax(xi)^T delta`` and ``xi`` is stepped by Adam (lr 0.025, weight decay
gamma = 0.01, betas (0.9, 0.999), eps 1e-8). Minimum losses are taken as 0 and every loss gets
``+ 1e-8``, as in the official code.

"After", as in the official code (Cranial-XIX/FAMO, ``experiments/*/trainer.py``): the same batch's
losses from a second forward pass after the model's step, in training mode and without gradient.
The harness computes that pass for a module that asks for ``previous_losses_after_update`` and
hands its losses over at the next call; the logits are updated at the start of that call, before
its weights are computed, which is exactly the official order (step, measure, update the logits,
next batch). Only the logits' update after a run's very last step, which trains nothing, is left
out. The extra forward pass (one per step, without gradient) is part of the run's training time
and so of its cost on the board. The cheaper variant that takes "after" from the
next batch instead, with no extra pass, is ``famo_next_batch.py``.

Defaults, from the official code: ``w_lr`` 0.025; gamma 0.01 is its experiments' default
(``experiments/utils.py``; the class itself defaults to 1e-5, its run scripts pass 1e-3 for
NYUv2, CelebA and QM9 and 0.01 for Cityscapes; LibMTL uses 1e-3). Gradient clipping: the
experiments' ``WeightMethod.backward`` calls ``clip_grad_norm_(shared_parameters, max_norm=1.0)``
*before* ``loss.backward()``, right after the trainer zeroed the gradients, so it clips nothing
(the repository's stand-alone example ``famo.py`` clips after the backward; the experiments behind
the paper's tables do not, nor does LibMTL's FAMO). So no clipping here, and FAMO needs no
Gramian. Every parameter, the task heads included, receives the gradient of the weighted loss, as
in the official code. The logits are plain state updated by this file's own Adam, not module
parameters (the harness's SGD must not step them).

Normalisation: the weights ``z_k / (c L_k)`` sum to 1; here they are multiplied by K = 2 so that
they sum to 2, the scale of equal weighting. ``tests/test_published_reproductions.py`` trains this
file through the harness and the official algorithm (its loop with the second forward pass and
``torch.optim.Adam`` on the logits) in one process (float64, two epochs) and compares every
parameter.
"""

import math

import torch.nn as nn

LR, WEIGHT_DECAY, BETA1, BETA2, ADAM_EPS = 0.025, 0.01, 0.9, 0.999, 1e-8
EPS = 1e-8


def softmax(xs):
    top = max(xs)
    exps = [math.exp(x - top) for x in xs]
    return [e / sum(exps) for e in exps]


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.xi = [0.0, 0.0]
        self.m = [0.0, 0.0]
        self.v = [0.0, 0.0]
        self.t = 0
        self.prev_log_losses = None  # log(L + 1e-8) of the previous call's batch, before its step

    def update_logits(self, after_log_losses):
        """The official ``update``: one Adam step of the logits on ``J_softmax^T delta``."""
        delta = [p - a for p, a in zip(self.prev_log_losses, after_log_losses)]
        z = softmax(self.xi)
        mean = sum(zk * dk for zk, dk in zip(z, delta))
        self.t += 1
        for k in range(2):
            grad = z[k] * (delta[k] - mean) + WEIGHT_DECAY * self.xi[k]  # J_softmax^T delta, + L2
            self.m[k] = BETA1 * self.m[k] + (1 - BETA1) * grad
            self.v[k] = BETA2 * self.v[k] + (1 - BETA2) * grad * grad
            m_hat = self.m[k] / (1 - BETA1**self.t)
            v_hat = self.v[k] / (1 - BETA2**self.t)
            self.xi[k] -= LR * m_hat / (math.sqrt(v_hat) + ADAM_EPS)

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, previous_losses_after_update):
        after = previous_losses_after_update  # None on a run's first call
        if after is not None and self.prev_log_losses is not None:
            self.update_logits([math.log(float(a) + EPS) for a in after])
        losses = [float(fine_loss.detach()) + EPS, float(coarse_loss.detach()) + EPS]
        self.prev_log_losses = [math.log(x) for x in losses]
        z = softmax(self.xi)
        c = sum(zk / lk for zk, lk in zip(z, losses))
        w_fine, w_coarse = (2 * zk / (c * lk) for zk, lk in zip(z, losses))
        return w_fine * fine_loss + w_coarse * coarse_loss
