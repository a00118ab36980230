"""Hidden architecture for the final phase: VGG-16 with BatchNorm (configuration D).

Loaded by ``harness.training.models.load_hidden_archs`` only for ``--phase final``. Backbone: 13
3x3 convs, each followed by BatchNorm and ReLU, five 2x2 max-pools (32 -> 1), 512-d features
(global average pooling at 1x1 is the identity).

``vgg16bn`` is the task's network: like every backbone, it ends in two linear heads off the pooled
features (fine 512-100: 51,300 parameters; coarse 512-20: 10,260), with PyTorch's default Linear
initialisation, as the benchmark's published rows were measured. ``vgg16bn-mlp`` keeps the usual
CIFAR VGG classifier per head (Linear 512-512, ReLU, Dropout, Linear 512-512, ReLU, Dropout,
Linear 512-k, every Linear N(0, 0.01)): the network of the 74.00 single-task reference
(chenyaofo/pytorch-cifar-models ``vgg.py``), for comparing with that number only; it is never run
unless named with ``--arch``.

Backbone initialisation as in that reference: convolutions Kaiming-normal (fan_out, ReLU) with zero
bias, BatchNorm weight 1 and bias 0.
"""

from torch import nn

from harness.training.models import register_arch

CONFIG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def mlp_head(in_features: int, num_classes: int) -> nn.Module:
    head = nn.Sequential(
        nn.Linear(in_features, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(512, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(512, num_classes),
    )
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    return head


class VGGFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in CONFIG_D:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.features(x).flatten(1)


@register_arch("vgg16bn", feature_dim=512, hidden=True)
def vgg16bn() -> nn.Module:
    return VGGFeatures()


@register_arch("vgg16bn-mlp", feature_dim=512, head_factory=mlp_head, hidden=True)
def vgg16bn_mlp() -> nn.Module:
    return VGGFeatures()
