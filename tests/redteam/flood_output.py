"""Floods stdout and stderr with binary garbage, including bytes that look like protocol frames."""
import sys

import torch.nn as nn

GARBAGE = bytes(range(256)) * 4096  # 1 MiB


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        for _ in range(4):
            sys.stdout.buffer.write(GARBAGE)
            sys.stderr.buffer.write(GARBAGE)
        sys.stdout.flush()
        return fine_loss + coarse_loss
