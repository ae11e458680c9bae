"""From a layer, its bits and a profile to the 8-bit convolution a simulator runs.

SCALE-Sim has no notion of precision: one 8-bit word per value, one MAC per PE per cycle. The
precision models make bits matter in two documented ways, chosen per profile:

``bitfusion`` (precision-scalable PEs, Bit Fusion style)
    One PE does ``floor(8/a) * floor(8/w)`` low-bit MACs per cycle: it fuses ``floor(8/a)``
    input channels of the reduction and ``floor(8/w)`` output channels. The layer is simulated
    with ``Cin' = ceil(Cin/floor(8/a))`` and ``Cout' = ceil(Cout/floor(8/w))`` (per group for
    grouped convolutions). Bits 5..8 run as 8, 3 as 4; a depthwise layer (one channel per group)
    gains nothing because its reduction lies inside one channel.
``packing`` (memory packing, fixed 8-bit MAC array)
    b-bit values are packed ``8/b`` per byte, so an operand's SRAM capacity and DRAM bandwidth in
    elements scale by ``8/b``: ifmap SRAM and bandwidth by the activation bits, filter SRAM and
    bandwidth by the weight bits. Outputs leave the array as 8-bit words (they are requantized on
    the next layer's input side), so the ofmap side is unchanged. Only changes latency with finite
    bandwidth (profiles with ``dram.mode: user``).
``bitfusion+packing``
    Both at once.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Hashable

from hw_backends.profile import Profile
from hw_backends.workload import Layer

MIN_BITS = 1
MAX_BITS = 8
WORD_BITS = 8


@dataclasses.dataclass(frozen=True)
class SimSpec:
    """One 8-bit convolution as SCALE-Sim runs it, memory already scaled for packing.

    ``ifmap_h``/``ifmap_w`` are the padded input cropped to the rows and columns the convolution
    reads, so SCALE-Sim's output size (which rounds up) equals PyTorch's (which rounds down).
    SRAM capacities and bandwidths are in elements (words of the operand's packed width).
    """

    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    num_filters: int
    stride_h: int
    stride_w: int
    ifmap_sram: int
    filter_sram: int
    ofmap_sram: int
    ifmap_bw: int
    filter_bw: int
    ofmap_bw: int

    def key(self) -> tuple:
        return dataclasses.astuple(self)


@dataclasses.dataclass(frozen=True)
class SimJob:
    """A layer's cost is ``repeats`` identical runs of ``spec`` (one per convolution group).

    ``spec`` is a :class:`SimSpec` for the precision-model backends; a backend with its own
    :meth:`~hw_backends.Backend.plan` may use any hashable value with a ``key()`` tuple.
    """

    spec: "SimSpec | Hashable"
    repeats: int


def check_bits(layer_name: str, bits: object) -> tuple[int, int]:
    """Validate one layer's ``(weight_bits, act_bits)``.

    Args:
        layer_name: Used in the error message.
        bits: The value found in the allocation for this layer.

    Returns:
        ``(weight_bits, act_bits)`` as ints.

    Raises:
        ValueError: If it is not a pair of ints in ``MIN_BITS..MAX_BITS``.
    """
    try:
        weight_bits, act_bits = bits  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"layer {layer_name!r}: bits must be a pair (weight_bits, act_bits), got {bits!r}") from None
    for side, value in (("weight", weight_bits), ("activation", act_bits)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not MIN_BITS <= value <= MAX_BITS:
            raise ValueError(
                f"layer {layer_name!r}: {side} bits must be an int in {MIN_BITS}..{MAX_BITS}, got {value!r}")
    return int(weight_bits), int(act_bits)


def fused_factor(bits: int) -> int:
    """Low-bit operations one 8-bit lane holds: ``floor(8/bits)``."""
    return WORD_BITS // bits


def packed_elements(words: float, bits: int) -> int:
    """Elements of ``bits`` width that fit in ``words`` 8-bit words."""
    return max(1, math.floor(words * WORD_BITS / bits))


def simulation_job(layer: Layer, profile: Profile, weight_bits: int, act_bits: int) -> SimJob:
    """Map one layer at one bit allocation to the convolution a simulator runs.

    Grouped (and depthwise) convolutions are ``groups`` independent convolutions of
    ``Cin/groups -> Cout/groups`` channels, as SCALE-Sim itself runs depthwise layers: one is
    simulated and its cycles multiplied by ``groups``. A linear layer is a 1x1 convolution on a
    1x1 input.

    Args:
        layer: The layer.
        profile: The hardware profile (its precision model and memory).
        weight_bits: Weight bits of the layer (already validated).
        act_bits: Input-activation bits of the layer (already validated).

    Returns:
        The :class:`SimJob` whose cycles times ``repeats`` is the layer's cost.
    """
    channels = layer.in_channels // layer.groups
    filters = layer.out_channels // layer.groups
    if profile.uses_bitfusion:
        channels = math.ceil(channels / fused_factor(act_bits))
        filters = math.ceil(filters / fused_factor(weight_bits))
    w_bits, a_bits = (weight_bits, act_bits) if profile.uses_packing else (WORD_BITS, WORD_BITS)
    sram, dram = profile.sram, profile.dram
    spec = SimSpec(
        ifmap_h=(layer.out_h - 1) * layer.stride_h + layer.kernel_h,
        ifmap_w=(layer.out_w - 1) * layer.stride_w + layer.kernel_w,
        filter_h=layer.kernel_h, filter_w=layer.kernel_w,
        channels=channels, num_filters=filters,
        stride_h=layer.stride_h, stride_w=layer.stride_w,
        ifmap_sram=packed_elements(sram.ifmap_kb * 1024, a_bits),
        filter_sram=packed_elements(sram.filter_kb * 1024, w_bits),
        ofmap_sram=packed_elements(sram.ofmap_kb * 1024, WORD_BITS),
        ifmap_bw=packed_elements(dram.ifmap_words_per_cycle, a_bits),
        filter_bw=packed_elements(dram.filter_words_per_cycle, w_bits),
        ofmap_bw=dram.ofmap_words_per_cycle,
    )
    return SimJob(spec=spec, repeats=layer.groups)
