"""Which bit widths a model may take: the one owner of the allowed bit range."""

from __future__ import annotations

import dataclasses
from typing import Literal, Union

MIN_BITS, MAX_BITS = 2, 8
LayerPolicy = Union[int, Literal["float", "search"]]


@dataclasses.dataclass(frozen=True)
class QuantPolicy:
    """Which bit widths are allowed and how the first and last compute layers are treated.

    Args:
        weight_bits: Allowed weight bit widths (each in :data:`MIN_BITS`..:data:`MAX_BITS`).
        act_bits: Allowed activation bit widths (each in :data:`MIN_BITS`..:data:`MAX_BITS`).
        first_layer / last_layer: An int fixes that layer's weights and input activations (and,
            for the last layer, its output) at that many bits; ``"float"`` leaves them
            unquantized; ``"search"`` makes them ordinary knobs.
        per_channel_weights: Per-output-channel weight scales (recommended below 8 bits).
        init_bits: Bit width every searchable knob starts at.

    Raises:
        ValueError: A bit width outside the allowed range or an unknown layer setting.
    """

    weight_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    act_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    first_layer: LayerPolicy = 8
    last_layer: LayerPolicy = 8
    per_channel_weights: bool = True
    init_bits: int = 8

    def __post_init__(self) -> None:
        for field in ("weight_bits", "act_bits"):
            values = tuple(sorted(set(int(b) for b in getattr(self, field))))
            if not values or values[0] < MIN_BITS or values[-1] > MAX_BITS:
                raise ValueError(f"QuantPolicy.{field}={getattr(self, field)!r}: give bit widths in {MIN_BITS}..{MAX_BITS}")
            object.__setattr__(self, field, values)
        for field in ("first_layer", "last_layer"):
            value = getattr(self, field)
            if value in ("float", "search"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
                raise ValueError(f"QuantPolicy.{field}={value!r}: use an int in {MIN_BITS}..{MAX_BITS}, 'float' or 'search'")
        if not MIN_BITS <= self.init_bits <= MAX_BITS:
            raise ValueError(f"QuantPolicy.init_bits={self.init_bits!r}: use an int in {MIN_BITS}..{MAX_BITS}")
