"""AMTL (Yun and Cho, "Achievement-Based Training Progress Balancing for Multi-Task Learning",
ICCV 2023; the official Samsung/Achievement-based-MTL code, class ``AMTLG``).

Each task's achievement is its accuracy over its accuracy potential. The task weights are
``w = softmax((1 - a_k / p_k) ** gamma)`` with focusing factor gamma = 2, where ``a_k`` is an
exponential moving average of the task's accuracy (momentum 0.1: ``a <- 0.1 acc + 0.9 a``,
initialised by the first measurement), and the loss is the weighted geometric mean
``L = L_fine ** w_fine * L_coarse ** w_coarse``. Before the first measurement the weights are
``softmax(1, 1) = (1/2, 1/2)``, i.e. the plain geometric mean.

Mapping to this interface: the official code measures accuracy on a validation set after each
epoch. The harness exposes no held-out accuracy (the test split is the score), so ``acc_k`` is
the task's training accuracy averaged over the epoch's batches (``batch_fine_acc``,
``batch_coarse_acc``); the weights change at each epoch boundary. The potential is ``p_k = 1``,
the official code's value when no single-task potential is given (a training accuracy can reach
1; a potential measured from single-task runs would need those runs first).

Normalisation: the weights sum to 1 inside a geometric mean (exponents), as in the paper and in
``gls.py``; the gradient weight of task k is ``dL/dL_k = w_k L / L_k``.
"""

import math

import torch.nn as nn

GAMMA, MOMENTUM, POTENTIAL = 2.0, 0.1, 1.0


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.epoch = None
        self.sums = [0.0, 0.0, 0]  # this epoch's fine accuracy, coarse accuracy, batch count
        self.kpi = None
        self.w = [0.5, 0.5]

    def close_epoch(self):
        accs = [self.sums[0] / self.sums[2], self.sums[1] / self.sums[2]]
        if self.kpi is None:
            self.kpi = accs
        else:
            self.kpi = [MOMENTUM * a + (1 - MOMENTUM) * k for a, k in zip(accs, self.kpi)]
        raw = [(1 - k / POTENTIAL) ** GAMMA for k in self.kpi]
        exps = [math.exp(r) for r in raw]
        self.w = [e / sum(exps) for e in exps]

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, batch_fine_acc, batch_coarse_acc):
        if self.epoch is not None and epoch != self.epoch and self.sums[2] > 0:
            self.close_epoch()
            self.sums = [0.0, 0.0, 0]
        self.epoch = epoch
        self.sums[0] += float(batch_fine_acc)
        self.sums[1] += float(batch_coarse_acc)
        self.sums[2] += 1
        return fine_loss ** self.w[0] * coarse_loss ** self.w[1]
