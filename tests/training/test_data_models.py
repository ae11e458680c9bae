"""Datasets and float models."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from brevitas_amed.training.data import digits, imagefolder, synthetic
from brevitas_amed.training.models import build_model, load_weights


def test_digits_split_is_fixed_stratified_and_disjoint():
    a, b = digits(seed=0), digits(seed=0)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    sizes = [len(a.train), len(a.val), len(a.test)]
    assert sum(sizes) == 1797 and sizes[0] > sizes[1] > 0
    for split in (a.train, a.val, a.test):
        assert set(split.tensors[1].tolist()) == set(range(10))  # every class in every split
    c = digits(seed=1)
    assert not torch.equal(a.test.tensors[0], c.test.tensors[0])
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10


def test_digits_resize_for_torchvision_models():
    d = digits(image_size=32, channels=3)
    assert d.input_shape == (3, 32, 32) and d.train.tensors[0].shape[1:] == (3, 32, 32)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        digits(channels=2)


def test_synthetic_labels_are_learnable_function_of_input():
    s = synthetic(num_samples=120, input_shape=(1, 4, 4), num_classes=3)
    assert len(s.train) + len(s.val) + len(s.test) == 120
    assert len(set(s.train.tensors[1].tolist())) == 3
    with pytest.raises(ValueError, match="too small"):
        synthetic(num_samples=5, num_classes=10)


def _write_images(root, classes=("cat", "dog"), n=3):
    for split in ("train", "val"):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40, 30), color=(40 * i, 100, 200)).save(folder / f"{i}.png")


def test_imagefolder_loads_imagenet_layout(tmp_path):
    _write_images(tmp_path)
    s = imagefolder(tmp_path, image_size=24)
    x, y = s.train[0]
    assert x.shape == (3, 24, 24) and s.num_classes == 2
    assert len(s.val) + len(s.test) == 6


def test_imagefolder_missing_path_says_what_to_set(tmp_path):
    with pytest.raises(FileNotFoundError, match="set data.path"):
        imagefolder(tmp_path / "nope")
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="val"):
        imagefolder(tmp_path)


def test_build_model_variants_and_errors(tmp_path):
    m = build_model("resnet18", num_classes=7)
    assert m.fc.out_features == 7
    path = tmp_path / "w.pt"
    torch.save(m.state_dict(), path)
    again = build_model("resnet18", num_classes=7, weights=str(path))
    assert torch.equal(again.fc.weight, m.fc.weight)
    custom = build_model("brevitas_amed.training.models:DigitsCNN", num_classes=4)
    assert custom.fc.out_features == 4
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        build_model("resnet19", 10)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model("resnet18", 10, weights=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="does not match the model"):
        load_weights(build_model("resnet18", 3), path)
    with pytest.raises(ValueError, match="cannot import"):
        build_model("no_such_pkg.mod:fn", 10)
