import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.training.data import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    DatasetError,
    Split,
    TrainLoader,
    epoch_generator,
    eval_batches,
    load_dataset,
    load_split,
    write_synthetic,
)


def test_synthetic_is_deterministic_and_hierarchical(tmp_path):
    a = write_synthetic(tmp_path / "a", seed=3, n_train=300, n_test=100)
    b = write_synthetic(tmp_path / "b", seed=3, n_train=300, n_test=100)
    for split in ("train", "test", "meta"):
        assert (a / split).read_bytes() == (b / split).read_bytes()
    train, test = load_dataset(tmp_path / "a", dataset="synthetic")
    assert train.images.shape == (300, 3, 32, 32) and train.images.dtype == torch.uint8
    pairs = set(zip(train.fine.tolist() + test.fine.tolist(), train.coarse.tolist() + test.coarse.tolist()))
    coarse_of = dict(pairs)
    assert len(coarse_of) == 100 == len(pairs), "each fine class is in exactly one superclass"
    assert sorted(np.bincount(list(coarse_of.values()))) == [5] * 20
    c = write_synthetic(tmp_path / "c", seed=4, n_train=300, n_test=100)
    assert (c / "train").read_bytes() != (a / "train").read_bytes()


def test_missing_dataset_names_path_and_fix(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_split(tmp_path, "train")
    assert str(tmp_path) in str(e.value) and "harness data download" in str(e.value)


def test_corrupt_dataset_is_reported(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    (d / "train").write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetError, match="damaged"):
        load_split(tmp_path, "train")
    with open(d / "train", "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "fine_labels": [0, 1], "coarse_labels": [0, 1]}, f)
    with pytest.raises(DatasetError, match="N x 3072"):
        load_split(tmp_path, "train")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/harness-pwned",))


def test_dataset_pickle_cannot_run_code(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    with open(d / "train", "wb") as f:
        pickle.dump({"data": _Evil()}, f)
    with pytest.raises(DatasetError, match="refusing to load posix.system"):
        load_split(tmp_path, "train")


def _split(n: int) -> Split:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    fine = torch.arange(n) % 100
    return Split(images, fine, fine // 5)


def test_full_size_epoch_keeps_last_partial_batch():
    loader = TrainLoader(
        Split(
            torch.zeros(50_000, 3, 32, 32, dtype=torch.uint8),
            torch.zeros(50_000, dtype=torch.long),
            torch.zeros(50_000, dtype=torch.long),
        ),
        batch_size=128,
        seed=42,
        device=torch.device("cpu"),
    )
    assert loader.steps_per_epoch == 391
    sizes = [x.shape[0] for x, _, _ in loader.epoch(0)]
    assert len(sizes) == 391 and sizes[-1] == 50_000 - 390 * 128 and sum(sizes) == 50_000


def test_augmentation_matches_per_image_crop_and_flip():
    split = _split(70)
    loader = TrainLoader(split, batch_size=32, seed=7, device=torch.device("cpu"))
    g = epoch_generator(7, 3)  # the loader draws order, offsets, flips in this order
    order = torch.randperm(70, generator=g)
    offsets = torch.randint(0, 9, (2, 70), generator=g)
    flips = torch.rand(70, generator=g) < 0.5
    mean = torch.tensor(CIFAR100_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR100_STD).view(3, 1, 1)
    got = torch.cat([x for x, _, _ in loader.epoch(3)])
    labels = torch.cat([y for _, y, _ in loader.epoch(3)])
    assert torch.equal(labels, split.fine[order])
    for k, i in enumerate(order.tolist()):
        padded = F.pad(split.images[i], (4, 4, 4, 4))  # zero fill, like RandomCrop(32, padding=4)
        crop = padded[:, offsets[0, i] : offsets[0, i] + 32, offsets[1, i] : offsets[1, i] + 32]
        if flips[i]:
            crop = crop.flip(2)
        expected = (crop.float() / 255 - mean) / std
        torch.testing.assert_close(got[k], expected, rtol=1e-5, atol=1e-5)
    assert flips.any() and (~flips).any() and offsets.min() == 0 and offsets.max() == 8


def test_order_depends_on_seed_and_epoch_only():
    split = _split(64)
    a = TrainLoader(split, batch_size=16, seed=1, device=torch.device("cpu"))
    b = TrainLoader(split, batch_size=16, seed=1, device=torch.device("cpu"), channels_last=True)
    for (xa, ya, _), (xb, yb, _) in zip(a.epoch(2), b.epoch(2)):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    assert not torch.equal(next(a.epoch(2))[1], next(a.epoch(3))[1])
    c = TrainLoader(split, batch_size=16, seed=2, device=torch.device("cpu"))
    assert not torch.equal(next(a.epoch(2))[1], next(c.epoch(2))[1])


def test_eval_batches_cover_the_split_in_order():
    split = _split(50)
    batches = eval_batches(split, batch_size=20, device=torch.device("cpu"))
    assert [b[0].shape[0] for b in batches] == [20, 20, 10]
    assert torch.equal(torch.cat([b[1] for b in batches]), split.fine)
