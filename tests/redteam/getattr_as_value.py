"""`getattr` used as a value (not called with a literal name) reaches `__import__` through a
function's globals, then `os`: the static check must reject it; past it, the code runs inside the
sandbox only."""
import torch.nn as nn

G = getattr


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        namespace = G(G(nn.Module, "__in" + "it__"), "__glo" + "bals__")
        builtins = namespace["__built" + "ins__"]
        imp = builtins["__imp" + "ort__"] if isinstance(builtins, dict) else G(builtins, "__imp" + "ort__")
        self.listing = imp("o" + "s").listdir("/")

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return fine_loss + coarse_loss
