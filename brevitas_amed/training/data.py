"""Datasets: the built-in ``digits`` (real, offline), ``imagefolder`` for user data, ``synthetic``.

Every loader returns :class:`DataSplits` with fixed train/val/test splits: ``val`` drives the
search's accuracy estimates, ``test`` is touched only to report final models.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset, TensorDataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class DataSplits:
    """Train/val/test datasets of ``(image, label)`` plus what a model needs to know."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]
    name: str


def _split_indices(n: int, fractions: Sequence[float], seed: int, labels: torch.Tensor) -> list[torch.Tensor]:
    """Stratified split: every class keeps its proportion in each part."""
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for cls in labels.unique(sorted=True):
        idx = (labels == cls).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        bounds = [0]
        for f in fractions[:-1]:
            bounds.append(bounds[-1] + round(f * len(idx)))
        bounds.append(len(idx))
        for p in range(len(fractions)):
            parts[p].append(idx[bounds[p]:bounds[p + 1]])
    return [torch.cat(p)[torch.randperm(sum(len(t) for t in p), generator=gen)] for p in parts]


def digits(image_size: int | None = None, channels: int = 1, seed: int = 0,
           fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> DataSplits:
    """scikit-learn's 1,797 real 8x8 handwritten digits, split train/val/test (stratified, seeded).

    Args:
        image_size: Resize (bilinear) to this square size, e.g. 32 so torchvision models run.
        channels: 1, or 3 to repeat the grey channel for RGB models.
        seed: Split seed; the same seed always gives the same split.
        fractions: Train/val/test fractions, summing to 1.

    Raises:
        ValueError: Bad ``channels``, ``image_size`` or ``fractions``.
    """
    from sklearn.datasets import load_digits

    if channels not in (1, 3):
        raise ValueError(f"digits: channels must be 1 or 3, got {channels!r}")
    if image_size is not None and image_size < 8:
        raise ValueError(f"digits: image_size must be >= 8 (the images are 8x8), got {image_size!r}")
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise ValueError(f"digits: fractions must be three positive numbers summing to 1, got {fractions!r}")
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - 0.5) / 0.5
    y = torch.tensor(bunch.target, dtype=torch.long)
    if image_size is not None and image_size != 8:
        x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    train, val, test = (TensorDataset(x[i], y[i]) for i in _split_indices(len(y), fractions, seed, y))
    return DataSplits(train, val, test, 10, tuple(x.shape[1:]), "digits")


def synthetic(num_samples: int = 256, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10,
              seed: int = 0) -> DataSplits:
    """Random images whose label is a fixed function of the image (learnable), for smoke tests."""
    if num_samples < 3 * num_classes:
        raise ValueError(f"synthetic: num_samples={num_samples} is too small for {num_classes} classes; use >= {3 * num_classes}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, *input_shape, generator=gen)
    teacher = torch.randn(int(torch.tensor(input_shape).prod()), num_classes, generator=gen)
    y = (x.flatten(1) @ teacher).argmax(dim=1)
    n_train, n_val = int(0.6 * num_samples), int(0.2 * num_samples)
    parts = (slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None))
    train, val, test = (TensorDataset(x[p], y[p]) for p in parts)
    return DataSplits(train, val, test, num_classes, tuple(input_shape), "synthetic")


def imagefolder(path: str | Path, image_size: int = 224, resize_size: int | None = None,
                seed: int = 0) -> DataSplits:
    """User images in ImageNet layout: ``path/train/<class>/*.jpg`` and ``path/val/<class>/*.jpg``.

    Train images get RandomResizedCrop + horizontal flip, others Resize + CenterCrop; all are
    normalised with the ImageNet statistics. ``path/test`` is the test split when it exists;
    otherwise ``val`` is split in half (seeded) into val and test.

    Raises:
        FileNotFoundError: ``path``, ``path/train`` or ``path/val`` is missing; says what to set.
    """
    from torchvision import datasets, transforms

    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"imagefolder: data path {str(root)!r} does not exist; set data.path to a folder with train/ and val/ (ImageNet layout)")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(f"imagefolder: {str(root / split)!r} is missing; data.path needs train/ and val/ sub-folders, one folder per class")
    resize_size = resize_size or int(round(image_size * 256 / 224))
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = transforms.Compose([transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), normalize])
    eval_tf = transforms.Compose([transforms.Resize(resize_size), transforms.CenterCrop(image_size),
                                  transforms.ToTensor(), normalize])
    train = datasets.ImageFolder(root / "train", transform=train_tf)
    val = datasets.ImageFolder(root / "val", transform=eval_tf)
    if train.classes != val.classes:
        raise ValueError(f"imagefolder: train/ and val/ under {str(root)!r} have different class folders")
    if (root / "test").is_dir():
        test = datasets.ImageFolder(root / "test", transform=eval_tf)
    else:
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(val), generator=gen).tolist()
        half = len(order) // 2
        val, test = torch.utils.data.Subset(val, order[:half]), torch.utils.data.Subset(val, order[half:])
    return DataSplits(train, val, test, len(train.classes), (3, image_size, image_size), "imagefolder")
