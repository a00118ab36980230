"""Architectures: a small registry, CIFAR ResNets, and the two-head wrapper.

Every architecture is a *backbone* (image -> feature vector) plus a head factory; the
two-head wrapper :class:`TwoHeadNet` adds a fine (100-way) and a coarse (20-way) head, in one of
the topologies of the CIFAR-100 topology study (shared backbone, independent backbones, one head reusing the other's
output).

Conventions (DESIGN.md): CIFAR ResNets as in He et al. 2016: 3x3 stem to 16 channels,
three stages of 16/32/64 channels with n basic blocks each, 1x1-conv + BN projection
shortcut where the shape changes, global average pooling (a mean over the spatial dims,
which has a deterministic backward on CUDA, unlike ``AdaptiveAvgPool2d``), 64-d features.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from harness.errors import UsageError
from harness.util.fileio import sha256_bytes

HeadFactory = Callable[[int, int], nn.Module]
"""``head_factory(in_features, num_classes) -> nn.Module``."""


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture: a backbone builder, its feature width and a head factory."""

    name: str
    build_backbone: Callable[[], nn.Module]
    feature_dim: int
    head_factory: HeadFactory
    hidden: bool = False


_REGISTRY: dict[str, ArchSpec] = {}


def linear_head(in_features: int, num_classes: int) -> nn.Module:
    """The usual ResNet head: one linear layer on the pooled features."""
    return nn.Linear(in_features, num_classes)


def register_arch(
    name: str, *, feature_dim: int, head_factory: HeadFactory = linear_head, hidden: bool = False
) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator registering a backbone builder under ``name``.

    Raises ``ValueError`` if the name is taken, so two modules cannot silently shadow
    each other.
    """

    def decorate(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is already registered")
        _REGISTRY[name] = ArchSpec(name, build, feature_dim, head_factory, hidden)
        return build

    return decorate


def available_archs(*, include_hidden: bool = True) -> list[str]:
    return sorted(n for n, s in _REGISTRY.items() if include_hidden or not s.hidden)


def get_arch(name: str) -> ArchSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_archs()) or "none"
        hint = ""
        if name == "vgg16bn":
            hint = " (vgg16bn is hidden: it is loaded only with --phase final)"
        raise UsageError(f"unknown architecture {name!r}{hint}; registered: {known}") from None


def default_hidden_dir() -> Path:
    """``hidden/`` beside the package (a source checkout)."""
    return Path(__file__).resolve().parents[2] / "hidden"


def load_hidden_archs(hidden_dir: Path | None = None) -> list[str]:
    """Import every ``*.py`` in ``hidden_dir`` so that it registers its architectures.

    Returns the names that were newly registered. Raises :class:`UsageError` with the
    fix when the directory is absent (the hidden architectures ship only with the
    maintainers' checkout). Importing twice is a no-op. Each architecture remembers the file
    and sha256 it came from (:func:`hidden_source`): a run's spec carries them, so that a process
    that trains it (a ``--jobs`` child, a Ray task) loads the same file (:func:`load_arch_file`).
    """
    hidden_dir = Path(hidden_dir) if hidden_dir is not None else default_hidden_dir()
    if not hidden_dir.is_dir():
        raise UsageError(
            f"the final phase needs the hidden architectures, but {hidden_dir} does not exist; "
            "run from a checkout that has hidden/, or pass --hidden-dir DIR"
        )
    before = set(_REGISTRY)
    for path in sorted(hidden_dir.glob("*.py")):
        data = path.read_bytes()
        _exec_arch_module(path.resolve(), data, sha256_bytes(data))
    return sorted(set(_REGISTRY) - before)


def hidden_source(name: str) -> tuple[str, str] | None:
    """``(file, sha256)`` of the hidden-architecture module that registered ``name`` in this
    process; None for a built-in architecture."""
    return _hidden_sources.get(name)


def load_arch_file(name: str, path: str, sha256: str, content: bytes | None = None) -> None:
    """Make the architecture ``name`` available in this process from the module that defines it
    (``path``, whose bytes must hash to ``sha256``: the file the evaluation was planned with).
    ``content``: those bytes, when the file is not on this machine (a Ray node). A no-op when this
    process already loaded that file. Raises :class:`UsageError` naming the file when it is
    missing, was changed, or does not register ``name``."""
    if name in _REGISTRY:
        loaded = _hidden_sources.get(name)
        if loaded is not None and loaded[1] != sha256:
            raise UsageError(
                f"architecture {name!r} was loaded here from {loaded[0]} (sha256 {loaded[1][:12]}), "
                f"but the run was planned with {path} (sha256 {sha256[:12]})"
            )
        return
    data = content
    if data is None or sha256_bytes(data) != sha256:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise UsageError(f"the architecture {name!r} is defined in {path}, which cannot be read here ({e})") from e
    if sha256_bytes(data) != sha256:
        raise UsageError(
            f"{path} changed since the evaluation was planned (its sha256 is no longer {sha256[:12]}): "
            "restore it, or start the evaluation again"
        )
    _exec_arch_module(Path(path), data, sha256)
    if name not in _REGISTRY:
        raise UsageError(f"{path} does not register the architecture {name!r}")


def _exec_arch_module(path: Path, data: bytes, sha256: str) -> None:
    """Run a hidden-architecture module's source (``data``, read from ``path``) once per process."""
    module_name = f"harness_hidden_{path.stem}"
    if module_name in _loaded_hidden:
        return
    spec = importlib.util.spec_from_loader(module_name, loader=None, origin=str(path))
    if spec is None:
        raise ImportError(f"cannot load the hidden architectures module {path}")
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path)
    before = set(_REGISTRY)
    exec(compile(data, str(path), "exec"), module.__dict__)  # trusted: the maintainers' hidden/ file
    _loaded_hidden.add(module_name)
    for name in set(_REGISTRY) - before:
        _hidden_sources[name] = (str(path), sha256)


_loaded_hidden: set[str] = set()
_hidden_sources: dict[str, tuple[str, str]] = {}  # architecture -> (file, sha256) it was registered from


# --------------------------------------------------------------------------- networks


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dims (deterministic backward on CUDA)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet backbone with ``6n + 2`` layers; outputs 64-d features."""

    feature_dim = 64

    def __init__(self, n: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)]
        in_planes = 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                layers.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
        layers.append(GlobalAvgPool())
        self.body = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register_arch("resnet20", feature_dim=64)
def resnet20() -> nn.Module:
    return CifarResNet(3)


@register_arch("resnet56", feature_dim=64)
def resnet56() -> nn.Module:
    return CifarResNet(9)


class TwoHeadNet(nn.Module):
    """The two-task network in one of the topology study's topologies; ``forward`` returns both logits.

    ``shared`` (the task's network): one backbone, a fine and a coarse head on its features.
    ``independent``: a backbone per task (no shared layer; the control). ``reuse-coarse``: the fine
    head reads the coarse head's logits concatenated to its features (``reuse-fine``: the other way
    round), on independent backbones; ``shared-reuse-*``: the same on one shared backbone. Through
    the concatenation the reading task's loss also trains the other task's head (and backbone).
    """

    def __init__(
        self,
        backbone: nn.Module,
        fine_head: nn.Module,
        coarse_head: nn.Module,
        *,
        coarse_backbone: nn.Module | None = None,
        reuse: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone  # the fine task's, when the backbones are independent
        self.fine_head = fine_head
        self.coarse_head = coarse_head
        if coarse_backbone is not None:
            self.coarse_backbone = coarse_backbone
        self.independent = coarse_backbone is not None
        if reuse not in (None, "coarse", "fine"):
            raise ValueError(f"reuse must be None, 'coarse' or 'fine', not {reuse!r}")
        self.reuse = reuse

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fine_features = self.backbone(x)
        coarse_features = self.coarse_backbone(x) if self.independent else fine_features
        if self.reuse == "coarse":
            coarse = self.coarse_head(coarse_features)
            return self.fine_head(torch.cat([fine_features, coarse], dim=1)), coarse
        if self.reuse == "fine":
            fine = self.fine_head(fine_features)
            return fine, self.coarse_head(torch.cat([coarse_features, fine], dim=1))
        return self.fine_head(fine_features), self.coarse_head(coarse_features)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.backbone.parameters()
        if self.independent:
            yield from self.coarse_backbone.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.fine_head.parameters()
        yield from self.coarse_head.parameters()


def build_model(arch: str, num_fine: int = 100, num_coarse: int = 20, topology: str = "shared") -> TwoHeadNet:
    """Build ``arch`` with two heads in ``topology`` (:data:`harness.protocol.TOPOLOGIES`). Uses the
    global torch RNG for initialisation: the fine backbone, the heads, then the coarse backbone, so
    that the shared topology initialises exactly as before topologies existed."""
    spec = get_arch(arch)
    reuse = "coarse" if topology.endswith("reuse-coarse") else "fine" if topology.endswith("reuse-fine") else None
    backbone = spec.build_backbone()
    fine_head = spec.head_factory(spec.feature_dim + (num_coarse if reuse == "coarse" else 0), num_fine)
    coarse_head = spec.head_factory(spec.feature_dim + (num_fine if reuse == "fine" else 0), num_coarse)
    independent = not topology.startswith("shared")
    return TwoHeadNet(
        backbone, fine_head, coarse_head, coarse_backbone=spec.build_backbone() if independent else None, reuse=reuse
    )


def count_parameters(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def parameter_counts(model: TwoHeadNet) -> tuple[int, int]:
    """``(parameters, shared)``: the model's parameters, and how many of them both task losses reach
    (what the Gramian covers; 0 when nothing is shared)."""
    params = list(model.parameters())
    return count_parameters(iter(params)), sum(p.numel() for p, s in zip(params, shared_parameters(model)) if s)


def task_reach(model: TwoHeadNet) -> tuple[list[bool], list[bool]]:
    """Per parameter of ``model``: does the fine loss reach it, does the coarse loss? Found by
    backpropagating each task's output of the eager module on two images (a property of the
    topology, not of the data; a compiled graph may hand out zeros where nothing flows)."""
    params = list(model.parameters())
    was_training = model.training
    model.eval()  # no batch statistics to update, no dropout
    try:
        fine, coarse = model(torch.zeros(2, 3, 32, 32, dtype=params[0].dtype, device=params[0].device))
        reached = [
            torch.autograd.grad(out.sum(), params, retain_graph=True, allow_unused=True) for out in (fine, coarse)
        ]
    finally:
        model.train(was_training)
    return [g is not None for g in reached[0]], [g is not None for g in reached[1]]


def shared_parameters(model: TwoHeadNet) -> list[bool]:
    """Per parameter: do both task losses reach it? The trainer's Gramian covers these (all
    parameters when none is)."""
    fine, coarse = task_reach(model)
    return [f and c for f, c in zip(fine, coarse)]


@functools.cache
def forward_macs(arch: str) -> int:
    """Multiply-accumulates of one forward pass on one 32x32 image, counted over convolutions
    and linear layers: the relative cost of architectures (e.g. to weigh runs in an ETA)."""
    model = build_model(arch).eval()
    total = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 32, 32))
    finally:
        for h in handles:
            h.remove()
    return total
