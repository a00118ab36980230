"""Imports os without an import statement, via getattr on __builtins__, and writes to the host."""
import torch.nn as nn

imp = getattr(__builtins__, "__imp" + "ort__") if not isinstance(__builtins__, dict) else __builtins__["__imp" + "ort__"]


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        imp("os").system("echo pwned > REDTEAM_MARKER")
        return fine_loss + coarse_loss
