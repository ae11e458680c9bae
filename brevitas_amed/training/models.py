"""Float models: torchvision by name, the built-in digits CNN, or ``module:function``."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

BUILTIN_MODELS = ("digits_cnn",)


class DigitsCNN(nn.Module):
    """A small residual CNN for 8x8 single-channel digits (6 compute layers, 42 k weights).

    Wide enough that a 32x32 systolic array sees several folds per layer, so bit widths move
    latency the way they do on real networks.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w // 2, 3, padding=1, bias=False), nn.BatchNorm2d(w // 2), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(w // 2, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.block_a = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.block_b = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv5 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.stem(x))
        x = self.relu(self.block_b(self.block_a(x)) + x)
        x = self.conv5(self.pool(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_model(name: str, num_classes: int, in_channels: int = 3, weights: str | None = None) -> nn.Module:
    """Build a float model.

    Args:
        name: A torchvision classification model (``resnet18``), ``digits_cnn``, or
            ``package.module:function`` called as ``function(num_classes=...)``.
        num_classes: Output classes.
        in_channels: Input channels (the built-in model only; torchvision models take 3).
        weights: ``None``/``"none"`` for random init; ``"torchvision"`` for the model's default
            pretrained weights (downloaded by torchvision, or from its cache); or a path to a
            ``state_dict`` file (``.pt``/``.pth``).

    Raises:
        ValueError: Unknown model name or unusable weights; says what is allowed.
        FileNotFoundError: A weights file that does not exist.
    """
    model = _construct(name, num_classes, in_channels, pretrained=weights == "torchvision")
    if weights not in (None, "none", "torchvision"):
        load_weights(model, weights)
    return model


def _construct(name: str, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    if name == "digits_cnn":
        if pretrained:
            raise ValueError("model digits_cnn has no torchvision weights; use weights: none (it is trained from scratch) or a file")
        return DigitsCNN(num_classes=num_classes, in_channels=in_channels)
    if ":" in name:
        module_name, _, func_name = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"model {name!r}: cannot import {func_name!r} from {module_name!r} ({exc})") from None
        if not callable(factory):
            raise ValueError(f"model {name!r}: {func_name} is a {type(factory).__name__}, not a function; "
                             f"name a function that takes num_classes and returns a torch.nn.Module")
        try:
            model = factory(num_classes=num_classes)
        except TypeError as exc:
            raise ValueError(f"model {name!r}: calling {func_name}(num_classes={num_classes}) failed ({exc}); name a "
                             f"function that takes num_classes and returns a torch.nn.Module") from None
        if not isinstance(model, nn.Module):
            raise ValueError(f"model {name!r}: {func_name}() returned {type(model).__name__}, not a torch.nn.Module")
        return model
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ValueError(f"unknown model {name!r}; use digits_cnn, a torchvision classification model "
                         f"(e.g. resnet18, resnet50, mobilenet_v2) or package.module:function")
    if not pretrained:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    try:
        model = torchvision.models.get_model(name, weights="DEFAULT")
    except Exception as exc:  # network or cache failure: say how to proceed offline
        raise ValueError(f"model {name!r}: could not load torchvision's pretrained weights ({exc}); "
                         f"put them in the torch hub cache or set model.weights to a state_dict file") from None
    if num_classes != 1000:
        _replace_head(model, num_classes)
    return model


def _replace_head(model: nn.Module, num_classes: int) -> None:
    for attr in ("fc", "classifier"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Linear(head.in_features, num_classes))
            return
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            head[-1] = nn.Linear(head[-1].in_features, num_classes)
            return
    raise ValueError(f"cannot replace the classifier of {type(model).__name__} for {num_classes} classes")


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``state_dict`` (or a checkpoint dict with a ``state_dict``/``model`` entry)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist; set model.weights to a state_dict file, 'torchvision' or 'none'")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"weights file {str(path)!r} does not match the model: {first}") from None
