"""Control: a fixed coarse weight, ``L = L_fine + 2 * L_coarse``, one point of the static-weight sweep.

The sweep (coarse weight 0, 0.1, 0.3, 0.5, 1, 2, 3; 0 is ``fine_only.py`` and 1 is
``equal_weighting.py``) is the tuned static weighting every multi-task method is compared with:
Kurin et al. (2022, "In defense of the unitary scalarization") and Xin et al. (2022, "Do current
multi-task optimization methods in deep learning even help?") found that specialised multi-task
optimisers rarely beat a plain weighted sum of the losses tuned as carefully; Xin et al. sweep its
weights.
"""

import torch.nn as nn

COARSE_WEIGHT = 2


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return fine_loss + COARSE_WEIGHT * coarse_loss
