"""A forward that does per-step work in a Python loop: about 0.1 s a call on a 2-core CI machine. It passes every check, but
the full protocol's 78,200 calls would need hours of worker time and exhaust the run's budget, so
``harness check`` warns before anyone spends GPU hours on it."""

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        acc = 0
        for i in range(5_000_000):  # stands for any slow per-step bookkeeping
            acc += i & 1
        return fine_loss + (1.0 + 0.0 * acc) * coarse_loss
