"""FAMO (Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023).

FAMO keeps logits ``xi`` (initially 0) and task weights ``z = softmax(xi)``. The model is trained on
``sum_k z_k log L_k / c`` with ``c = sum_k z_k / L_k`` detached, i.e. task k's loss is weighted by
``z_k / (c L_k)`` (weights summing to 1). After each step the logits move so as to equalise the
tasks' rates of improvement: with ``delta_k = log L_k(before) - log L_k(after)``, the gradient
of ``xi`` is ``J_softmax(xi)^T delta`` and ``xi`` is stepped by Adam (lr 0.025, weight decay
gamma = 0.01, betas (0.9, 0.999), eps 1e-8). Minimum losses are taken as 0, as in the official code.

Defaults, from the official code (Cranial-XIX/FAMO): ``w_lr`` 0.025; gamma 0.01 is its experiments'
default (``experiments/utils.py``; the class itself defaults to 1e-5, its run scripts pass 1e-3 for
NYUv2, CelebA and QM9 and 0.01 for Cityscapes; LibMTL uses 1e-3). Gradient clipping: the official
``backward`` calls ``clip_grad_norm_(shared_parameters, max_norm=1.0)`` *before*
``loss.backward()``, right after the trainer zeroed the gradients, so it clips nothing; LibMTL's
FAMO does not clip. So no clipping here, and FAMO needs no Gramian. Every parameter, the task heads
included, receives the gradient of the weighted loss, as in the official code.

Approximation: the official code measures "after" by a second forward pass on the same batch
after the model's step. This interface sees one batch per call, so "after" is the next batch's
loss: the logits update at the start of each call from (previous losses, current losses), one
step later than in the paper, and needs no extra forward pass. The logits are plain state updated
by this file's own Adam, not module parameters (the harness's SGD must not step them).

Normalisation: the weights ``z_k / (c L_k)`` sum to 1; here they are multiplied by K = 2 so that
they sum to 2, the scale of equal weighting.
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
        self.prev_log_losses = None

    def update_logits(self, log_losses):
        delta = [p - c for p, c in zip(self.prev_log_losses, log_losses)]
        z = softmax(self.xi)
        mean = sum(zk * dk for zk, dk in zip(z, delta))
        self.t += 1
        for k in range(2):
            grad = z[k] * (delta[k] - mean) + WEIGHT_DECAY * self.xi[k]  # J_softmax^T delta, + L2
            self.m[k] = BETA1 * self.m[k] + (1 - BETA1) * grad
            self.v[k] = BETA2 * self.v[k] + (1 - BETA2) * grad * grad
            m_hat = self.m[k] / (1 - BETA1 ** self.t)
            v_hat = self.v[k] / (1 - BETA2 ** self.t)
            self.xi[k] -= LR * m_hat / (math.sqrt(v_hat) + ADAM_EPS)

    def weights(self, losses):
        z = softmax(self.xi)
        c = sum(zk / lk for zk, lk in zip(z, losses))
        return [2 * zk / (c * lk) for zk, lk in zip(z, losses)]

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        losses = [float(fine_loss.detach()) + EPS, float(coarse_loss.detach()) + EPS]
        log_losses = [math.log(x) for x in losses]
        if self.prev_log_losses is not None:
            self.update_logits(log_losses)
        self.prev_log_losses = log_losses
        w_fine, w_coarse = self.weights(losses)
        return w_fine * fine_loss + w_coarse * coarse_loss
