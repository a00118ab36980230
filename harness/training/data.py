"""CIFAR-100 data: the python-format reader, a synthetic generator in the same format,
and an on-device loader with batched augmentation.

Layout on disk (the official ``cifar-100-python`` archive, or ``harness data synthetic``)::

    DIR/cifar-100-python/{train,test,meta}

``train``/``test`` hold a dict with ``data`` (N x 3072 uint8, channel-major), ``fine_labels``
and ``coarse_labels``; ``meta`` holds ``fine_label_names`` and ``coarse_label_names``.
The files are pickles, so they are read with an unpickler that only accepts the numpy
types the archive contains: a tampered dataset cannot run code in the trainer.

torchvision is never imported here except by :func:`download_cifar100`.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock
from platformdirs import user_cache_dir

from harness.errors import DatasetError
from harness.util.fileio import write_atomic

if TYPE_CHECKING:
    from harness.protocol import Profile

SUBDIR = "cifar-100-python"
NUM_FINE, NUM_COARSE = 100, 20
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
DATA_DIR_ENV = "HARNESS_DATA_DIR"
CACHE_DIR_ENV = "HARNESS_CACHE_DIR"


# ------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """``$HARNESS_CACHE_DIR``, else the user cache dir (``~/.cache/harness`` on Linux)."""
    return Path(os.environ.get(CACHE_DIR_ENV) or user_cache_dir("harness"))


def default_data_dir(dataset: str) -> Path:
    """Where a dataset lives when ``--data-dir`` is not given.

    ``cifar100``: ``$HARNESS_DATA_DIR``, else ``<cache>/cifar100``.
    ``synthetic``: ``<cache>/synthetic`` (generated on first use).
    """
    if dataset == "cifar100":
        env = os.environ.get(DATA_DIR_ENV)
        return Path(env) if env else cache_dir() / "cifar100"
    if dataset == "synthetic":
        return cache_dir() / "synthetic"
    raise ValueError(f"unknown dataset {dataset!r}")


def _archive_dir(root: Path) -> Path:
    root = Path(root)
    return root if root.name == SUBDIR else root / SUBDIR


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Split:
    """One split in memory: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""

    images: torch.Tensor
    fine: torch.Tensor
    coarse: torch.Tensor

    def __len__(self) -> int:
        return int(self.fine.shape[0])

    def head(self, n: int | None) -> Split:
        """The first ``n`` examples (all of them when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return Split(self.images[:n], self.fine[:n], self.coarse[:n])


class _NumpyOnlyUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _read_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        obj = _NumpyOnlyUnpickler(io.BufferedReader(f), encoding="latin1").load()
    if not isinstance(obj, dict):
        raise ValueError(f"expected a dict, found {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _fix_hint(root: Path, dataset: str) -> str:
    if dataset == "synthetic":
        return f"delete {root} and run `harness data synthetic {root}`"
    return f"run `harness data download --data-dir {root}` (or pass --data-dir to where cifar-100-python/ is)"


def load_split(root: Path, split: str, *, dataset: str = "cifar100") -> Split:
    """Read ``train`` or ``test`` from ``root`` (the dir containing ``cifar-100-python/``).

    Raises :class:`DatasetError` naming the file and the fix when the file is missing,
    unreadable, or does not have the CIFAR-100 shape and label ranges.
    """
    path = _archive_dir(root) / split
    if not path.is_file():
        raise DatasetError(f"CIFAR-100 {split} split not found at {path}; {_fix_hint(Path(root), dataset)}")
    try:
        d = _read_pickle(path)
        data = np.asarray(d["data"])
        fine = np.asarray(d["fine_labels"], dtype=np.int64)
        coarse = np.asarray(d["coarse_labels"], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"'data' must be N x 3072 uint8, found {data.shape} {data.dtype}")
        if not (len(fine) == len(coarse) == len(data)) or len(data) == 0:
            raise ValueError("'data', 'fine_labels' and 'coarse_labels' differ in length or are empty")
        if fine.min() < 0 or fine.max() >= NUM_FINE or coarse.min() < 0 or coarse.max() >= NUM_COARSE:
            raise ValueError("labels out of range (fine 0..99, coarse 0..19)")
    except (OSError, EOFError, KeyError, ValueError, TypeError, pickle.UnpicklingError, AttributeError) as e:
        raise DatasetError(
            f"CIFAR-100 {split} split at {path} is damaged ({type(e).__name__}: {e}); {_fix_hint(Path(root), dataset)}"
        ) from e
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return Split(images, torch.from_numpy(fine), torch.from_numpy(coarse))


def load_dataset(root: Path, *, dataset: str = "cifar100") -> tuple[Split, Split]:
    """Both splits of the dataset at ``root``."""
    return load_split(root, "train", dataset=dataset), load_split(root, "test", dataset=dataset)


# -------------------------------------------------------------------------- synthetic


def _synthetic_images(
    rng: np.random.Generator, fine: np.ndarray, coarse_of: np.ndarray, class_params: dict[str, np.ndarray]
) -> np.ndarray:
    """Images from class patterns plus noise.

    The superclass sets a base colour (so the coarse label carries information shared by
    its five fine classes); the fine class adds an oriented grating of its own frequency
    and a small colour offset; each image gets a random grating phase, a random contrast,
    and Gaussian noise.
    """
    n = len(fine)
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    theta = class_params["theta"][fine][:, None, None]
    freq = class_params["freq"][fine][:, None, None]
    phase = rng.uniform(0, 2 * math.pi, size=(n, 1, 1))
    wave = np.sin(2 * math.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy) / 32 + phase)
    colour = class_params["super_colour"][coarse_of[fine]] + class_params["fine_colour"][fine]
    contrast = rng.uniform(0.6, 1.0, size=(n, 1, 1, 1))
    img = (
        128
        + 45 * colour[:, :, None, None]
        + 60 * contrast * wave[:, None] * class_params["wave_tint"][fine][:, :, None, None]
    )
    img = img + rng.normal(0, 20, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).reshape(n, 3072)


def write_synthetic(root: Path, *, seed: int = 0, n_train: int = 5000, n_test: int = 1000) -> Path:
    """Write a synthetic CIFAR-100-format dataset under ``root/cifar-100-python``.

    Deterministic in ``seed``: 100 fine classes in 20 superclasses of five (a random
    assignment, so nothing may rely on ``coarse == fine // 5``). Returns the archive dir.
    """
    rng = np.random.default_rng(seed)
    groups = rng.permutation(NUM_FINE).reshape(NUM_COARSE, NUM_FINE // NUM_COARSE)
    coarse_of = np.empty(NUM_FINE, dtype=np.int64)
    for c, members in enumerate(groups):
        coarse_of[members] = c
    class_params = {
        "super_colour": rng.uniform(-1, 1, size=(NUM_COARSE, 3)),
        "fine_colour": rng.uniform(-0.6, 0.6, size=(NUM_FINE, 3)),
        "theta": rng.uniform(0, math.pi, size=NUM_FINE),
        "freq": rng.uniform(1.5, 6.0, size=NUM_FINE),
        "wave_tint": rng.uniform(0.3, 1.0, size=(NUM_FINE, 3)),
    }
    out = _archive_dir(Path(root))
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.permutation(np.arange(n) % NUM_FINE)
        data = _synthetic_images(rng, fine, coarse_of, class_params)
        write_atomic(
            out / split,
            pickle.dumps(
                {
                    "data": data,
                    "fine_labels": fine.tolist(),
                    "coarse_labels": coarse_of[fine].tolist(),
                    "filenames": [f"synthetic_{split}_{i}.png" for i in range(n)],
                },
                protocol=4,
            ),
        )
    write_atomic(
        out / "meta",
        pickle.dumps(
            {
                "fine_label_names": [f"fine_{i:02d}" for i in range(NUM_FINE)],
                "coarse_label_names": [f"coarse_{i:02d}" for i in range(NUM_COARSE)],
            },
            protocol=4,
        ),
    )
    return out


def ensure_synthetic(root: Path) -> Path:
    """Generate the default synthetic dataset at ``root`` unless it is already there.

    Safe under concurrent callers (a file lock); a half-written dataset never appears
    (each file is renamed into place, ``meta`` last).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".generate.lock")):
        if not (_archive_dir(root) / "meta").is_file():
            write_synthetic(root)
    return root


def load_profile_data(profile: Profile, data_dir: Path | None = None) -> tuple[Split, Split]:
    """The train and test splits a profile trains and scores on: its dataset under ``data_dir``
    (default :func:`default_data_dir`; synthetic data is generated there when absent), cut to
    the profile's subsets."""
    root = Path(data_dir) if data_dir else default_data_dir(profile.dataset)
    if profile.dataset == "synthetic":
        ensure_synthetic(root)
    train, test = load_dataset(root, dataset=profile.dataset)
    return train.head(profile.train_subset), test.head(profile.test_subset)


def download_cifar100(root: Path) -> Path:
    """Download the official archive with torchvision (optional extra: ``harness[download]``)."""
    try:
        from torchvision.datasets import CIFAR100  # optional, never on the training path
    except Exception as e:  # torchvision missing or broken
        raise DatasetError(
            f"downloading needs torchvision ({type(e).__name__}: {e}); install it with "
            f"`pip install 'harness[download]'`, or fetch cifar-100-python.tar.gz yourself and "
            f"extract it into {root}"
        ) from e
    CIFAR100(str(root), train=True, download=True)
    CIFAR100(str(root), train=False, download=True)
    return _archive_dir(Path(root))


# ----------------------------------------------------------------------------- loader


def _normaliser(device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    std = torch.tensor(CIFAR100_STD, device=device, dtype=dtype).view(1, 3, 1, 1)
    mean = torch.tensor(CIFAR100_MEAN, device=device, dtype=dtype).view(1, 3, 1, 1)
    return 1.0 / (255.0 * std), -mean / std


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator that draws one epoch's order and augmentation."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class TrainLoader:
    """The whole training split resident on ``device``, augmented in batches.

    Per epoch, a CPU generator seeded from ``(seed, epoch)`` draws the order, per-image
    crop offsets (zero padding of ``padding`` pixels, as ``RandomCrop(32, padding)``) and
    per-image horizontal flips, so the sequence of batches is the same on every device.
    Crop and flip are one gather on the padded uint8 tensor; normalisation follows with
    the CIFAR-100 mean/std. The last partial batch is kept (391 steps at 50,000 / 128).
    """

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        padding: int = 4,
        flip: bool = True,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.n = len(split)
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.padding = padding
        self.flip = flip
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        p = padding
        self.padded = F.pad(split.images, (p, p, p, p)).to(device)  # zero fill, uint8
        self.fine = split.fine.to(device)
        self.coarse = split.coarse.to(device)
        self.dtype = dtype
        self.scale, self.shift = _normaliser(device, dtype)
        self._ar = torch.arange(32, device=device)
        self._channels = torch.arange(3, device=device).view(1, 3, 1, 1)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(images float32 normalised, fine labels, coarse labels)`` batches."""
        g = epoch_generator(self.seed, epoch)
        order = torch.randperm(self.n, generator=g)
        offsets = torch.randint(0, 2 * self.padding + 1, (2, self.n), generator=g)
        flips = torch.rand(self.n, generator=g) < 0.5 if self.flip else torch.zeros(self.n, dtype=torch.bool)
        order, offsets, flips = (t.to(self.device) for t in (order, offsets, flips))
        for start in range(0, self.n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self._augment(idx, offsets[:, idx], flips[idx]), self.fine[idx], self.coarse[idx]

    def _augment(self, idx: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        cols_in_crop = torch.where(flips[:, None], 31 - self._ar, self._ar)  # (B, 32)
        rows = (offsets[0][:, None] + self._ar)[:, None, :, None]  # (B, 1, 32, 1)
        cols = (offsets[1][:, None] + cols_in_crop)[:, None, None, :]  # (B, 1, 1, 32)
        crops = self.padded[idx[:, None, None, None], self._channels, rows, cols]
        x = crops.to(self.dtype).mul_(self.scale).add_(self.shift)
        return x.contiguous(memory_format=self.memory_format)


def eval_batches(
    split: Split,
    *,
    batch_size: int,
    device: torch.device,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The test split as normalised batches on ``device`` (built once, reused every epoch)."""
    scale, shift = _normaliser(device, dtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    for start in range(0, len(split), batch_size):
        x = split.images[start : start + batch_size].to(device, dtype).mul_(scale).add_(shift)
        out.append(
            (
                x.contiguous(memory_format=fmt),
                split.fine[start : start + batch_size].to(device),
                split.coarse[start : start + batch_size].to(device),
            )
        )
    return out
