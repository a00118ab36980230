"""Walks the autograd graph from fine_loss looking for the model's parameters to tamper with."""
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        stack, seen = [fine_loss.grad_fn], 0
        while stack:
            node = stack.pop()
            if node is None:
                continue
            seen += 1
            var = getattr(node, "variable", None)
            if var is not None and var is not fine_loss:
                var.data.mul_(0)  # would zero a model weight in the trainer's process
            stack.extend(n for n, _ in node.next_functions)
        return fine_loss + coarse_loss
