import pytest
import torch

from harness.errors import UsageError
from harness.training import models
from harness.training.models import available_archs, build_model, count_parameters, get_arch, load_hidden_archs


@pytest.mark.parametrize("arch, expected", [("resnet20", 0.27e6), ("resnet56", 0.86e6)])
def test_backbone_parameter_counts_match_published(arch, expected):
    model = build_model(arch)
    backbone = count_parameters(model.backbone_parameters())
    # Published counts use parameter-free shortcuts; the 1x1 projections add ~2.7k.
    assert abs(backbone - expected) / expected < 0.03, backbone
    heads = count_parameters(model.head_parameters())
    assert heads == (64 * 100 + 100) + (64 * 20 + 20)
    assert backbone + heads == count_parameters(model.parameters())


def test_backbone_and_heads_partition_the_parameters():
    model = build_model("resnet20")
    ids = [id(p) for p in model.backbone_parameters()] + [id(p) for p in model.head_parameters()]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_forward_shapes_and_channels_last():
    model = build_model("resnet20").to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    fine, coarse = model(x)
    assert fine.shape == (4, 100) and coarse.shape == (4, 20)


def test_unknown_and_hidden_arch_errors_are_helpful(monkeypatch):
    with pytest.raises(UsageError, match="registered: .*resnet20"):
        get_arch("resnet1000")
    # as in a fresh process, whichever test loaded the hidden architectures before this one
    monkeypatch.delitem(models._REGISTRY, "vgg16bn", raising=False)
    assert "vgg16bn" not in available_archs()
    with pytest.raises(UsageError, match="--phase final"):
        get_arch("vgg16bn")


def test_hidden_archs_load_from_directory(tmp_path):
    with pytest.raises(UsageError, match="--hidden-dir"):
        load_hidden_archs(tmp_path / "absent")
    load_hidden_archs()  # the repository's hidden/
    model = build_model("vgg16bn")
    backbone = count_parameters(model.backbone_parameters())
    assert abs(backbone - 14.72e6) / 14.72e6 < 0.01, backbone
    fine, coarse = model(torch.randn(2, 3, 32, 32))
    assert fine.shape == (2, 100) and coarse.shape == (2, 20)


def test_vgg16bn_ends_in_the_tasks_two_linear_heads():
    """The benchmark task's network: one linear layer per head off the 512-d pooled features, with
    PyTorch's default Linear initialisation (U(-1/sqrt(512), 1/sqrt(512)))."""
    import math

    from torch import nn

    load_hidden_archs()
    torch.manual_seed(0)
    model = build_model("vgg16bn")
    assert isinstance(model.fine_head, nn.Linear) and isinstance(model.coarse_head, nn.Linear)
    assert count_parameters(model.fine_head.parameters()) == 51_300
    assert count_parameters(model.coarse_head.parameters()) == 10_260
    bound = 1 / math.sqrt(512)
    for head in (model.fine_head, model.coarse_head):
        assert float(head.weight.abs().max()) <= bound and float(head.weight.std()) == pytest.approx(
            bound / math.sqrt(3), rel=0.1
        )
        assert float(head.bias.abs().max()) <= bound and torch.count_nonzero(head.bias) > 0


def test_vgg16bn_mlp_initialisation_follows_the_cited_reference():
    """vgg16bn-mlp, the network of pytorch-cifar-models (source of the 74.00 single-task number):
    Linear N(0, 0.01) with zero bias, convolutions Kaiming-normal (fan_out) with zero bias, BatchNorm
    1 and 0."""
    import math

    from torch import nn

    load_hidden_archs()
    torch.manual_seed(0)
    model = build_model("vgg16bn-mlp")
    linears = [m for head in (model.fine_head, model.coarse_head) for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6
    for m in linears:
        assert float(m.weight.std()) == pytest.approx(0.01, rel=0.05) and float(m.weight.mean().abs()) < 1e-3
        assert torch.count_nonzero(m.bias) == 0
    for m in model.backbone.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            assert float(m.weight.std()) == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)
            assert torch.count_nonzero(m.bias) == 0
        elif isinstance(m, nn.BatchNorm2d):
            assert bool((m.weight == 1).all()) and torch.count_nonzero(m.bias) == 0
