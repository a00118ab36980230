"""A task-card file that keeps an attribute named head_loss: it is not a head loss method."""
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.head_loss = nn.Identity()  # called like a function, but not a method of the class

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return self.head_loss(fine_loss) + coarse_loss
