import torch.nn as nn


class SomethingElse(nn.Module):
    pass
