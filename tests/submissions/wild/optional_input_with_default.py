"""Gradient-aware weighting written as public code often writes it: the Gramian as a parameter with a
default, and ``**kwargs`` to swallow anything else (never read). The harness passes optional inputs only
to keyword-only parameters (or through ``**kwargs`` where the code reads them), so this trains as equal
weighting: ``harness check`` must warn."""

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, gramian=None, **kwargs):
        if gramian is None:
            return fine_loss + coarse_loss
        cos = gramian[0, 1] / (gramian[0, 0] * gramian[1, 1]).sqrt().clamp_min(1e-12)
        return fine_loss + (1 + cos).clamp_min(0) / 2 * coarse_loss
