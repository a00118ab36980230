"""Floods stdout and stderr with binary garbage on every call; must not corrupt the protocol."""
import os
import sys

import torch.nn as nn

GARBAGE = bytes(range(256)) * 64


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        sys.stdout.buffer.write(GARBAGE); sys.stdout.flush()
        os.write(1, GARBAGE)
        print("\x65\x00\x00\x00\x10 fake frame", flush=True)
        sys.stderr.write("noise on stderr\n")
        return fine_loss + coarse_loss
