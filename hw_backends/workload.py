"""Torch-free description of a network's compute layers.

A :class:`Workload` is what every hardware backend consumes: the conv and linear layers of a
network in execution order, with the shapes a systolic-array simulator needs and the names of the
bit knobs (weights, input activations) that control each layer's precision.

What is costed, the same way by every backend: convolutions of any grouping (depthwise and
grouped ones run as ``groups`` independent convolutions), including the 1x1 convolutions of
squeeze-and-excitation blocks, and linear layers. Elementwise and data-movement operations
(activations and their lookup tables, residual adds, the squeeze-and-excitation product,
concatenation, chunk/split, channel shuffle, pooling, BatchNorm folded into requantization) are
free: they are not layers of a workload, as in SCALE-Sim, whose systolic array runs only matrix
products, and FINN, which fuses them into the thresholds and data movers around each layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

LAYER_KINDS = ("conv", "linear")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One compute layer (conv or linear) as the hardware sees it.

    Attributes:
        name: Original module name in the float model (``layer1.0.conv1``).
        kind: ``"conv"`` or ``"linear"``. A linear layer is a 1x1 conv on a 1x1 input.
        in_channels / out_channels: Channel counts (features for linear).
        in_h / in_w: Input feature-map size before padding (1 for linear).
        kernel_h / kernel_w, stride_h / stride_w, pad_h / pad_w: Convolution geometry.
        groups: Convolution groups (``in_channels`` for depthwise).
        weight_knob / act_knob: Names of the bit knobs that set this layer's weight bits and
            input-activation bits; ``None`` when that side is left in float.
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    in_h: int = 1
    in_w: int = 1
    kernel_h: int = 1
    kernel_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    groups: int = 1
    weight_knob: str | None = None
    act_knob: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"layer {self.name!r}: kind must be one of {LAYER_KINDS}, got {self.kind!r}")
        for field in ("in_channels", "out_channels", "in_h", "in_w", "kernel_h", "kernel_w",
                      "stride_h", "stride_w", "groups"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"layer {self.name!r}: {field} must be a positive int, got {value!r}")
        for field in ("pad_h", "pad_w"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"layer {self.name!r}: {field} must be a non-negative int, got {value!r}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"layer {self.name!r}: groups={self.groups} must divide in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}"
            )
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(f"layer {self.name!r}: kernel larger than padded input")

    @property
    def out_h(self) -> int:
        return (self.in_h + 2 * self.pad_h - self.kernel_h) // self.stride_h + 1

    @property
    def out_w(self) -> int:
        return (self.in_w + 2 * self.pad_w - self.kernel_w) // self.stride_w + 1

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one inference of this layer."""
        return self.out_h * self.out_w * self.out_channels * (self.in_channels // self.groups) * self.kernel_h * self.kernel_w

    @property
    def weight_count(self) -> int:
        return self.out_channels * (self.in_channels // self.groups) * self.kernel_h * self.kernel_w

    def shape_key(self) -> tuple:
        """Everything that determines the layer's cost; equal keys simulate identically."""
        return (self.kind, self.in_channels, self.out_channels, self.in_h, self.in_w, self.kernel_h,
                self.kernel_w, self.stride_h, self.stride_w, self.pad_h, self.pad_w, self.groups)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Layer":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown layer fields {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class Workload:
    """The compute layers of one network at one input size, in execution order."""

    name: str
    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        names = [layer.name for layer in self.layers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"workload {self.name!r}: duplicate layer names {sorted(dup)}")

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"workload {self.name!r} has no layer {name!r}")

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def uniform_bits(self, weight_bits: int = 8, act_bits: int = 8) -> dict[str, tuple[int, int]]:
        return {layer.name: (weight_bits, act_bits) for layer in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "input_shape": list(self.input_shape),
                "layers": [layer.to_dict() for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Workload":
        return cls(name=data["name"], input_shape=tuple(data.get("input_shape", ())),
                   layers=tuple(Layer.from_dict(d) for d in data["layers"]))

    @classmethod
    def from_layers(cls, name: str, layers: Iterable[Layer]) -> "Workload":
        return cls(name=name, layers=tuple(layers))
