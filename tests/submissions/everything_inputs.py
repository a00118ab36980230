"""Uses every input a loss can use: the epoch and the schedule, the step, the batch accuracies,
learnable parameters, and Python state kept between calls; and ignores a task on some steps."""
import math

import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(2))
        self.scale = nn.Parameter(torch.ones(()))
        self.fine_avg = None  # Python state: a running mean of the fine loss

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, step, steps_per_epoch,
                batch_fine_acc, batch_coarse_acc):
        value = float(fine_loss.detach())
        self.fine_avg = value if self.fine_avg is None else 0.8 * self.fine_avg + 0.2 * value
        progress = (step + 1) / (steps_per_epoch * total_epochs)
        w_fine = torch.exp(-self.log_vars[0]) * (1.0 + 0.5 * math.cos(math.pi * epoch / total_epochs))
        fine_term = w_fine * fine_loss * (0.5 + batch_coarse_acc) * (value / self.fine_avg)
        if step % 3 == 1:  # the coarse task sits out these steps: no gradient for its head
            return fine_term + self.log_vars[0]
        w_coarse = torch.exp(-self.log_vars[1]) * progress * (1.0 + batch_fine_acc)
        return fine_term + self.scale * w_coarse * coarse_loss + self.log_vars.sum() + 0.1 * (self.scale - 1) ** 2
