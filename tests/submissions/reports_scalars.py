"""A learned gate on the coarse loss that reports what it did with ``scalars()``: the gate (a
tensor), a call count (an int) and a flag (a bool), read by the harness every N-th step."""

import torch
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(0.5))
        self.calls = 0
        self.gate = torch.sigmoid(self.logit)

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        self.calls += 1
        self.gate = torch.sigmoid(self.logit)
        return fine_loss + self.gate * coarse_loss - 0.1 * torch.log(self.gate)

    def scalars(self):
        return {"gate": self.gate, "calls": self.calls, "warm": self.calls > 2}
