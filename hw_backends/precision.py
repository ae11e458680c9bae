"""From a layer, its bits and a profile to the 8-bit convolution a simulator runs.

SCALE-Sim has no notion of precision: one 8-bit word per value, one MAC per PE per cycle. A
precision model says what one *simulated element* of each operand holds, and so how many of them
the profile's SRAM bytes and DRAM bytes per cycle hold. Each effect of low bits is counted once.

Compute (``bitfusion`` in the profile's ``precision``: precision-scalable PEs, Bit Fusion style)
    A PE is built of 2-bit BitBricks: it does ``fa * fw`` MACs per cycle with
    ``fa = floor(8/max(a, 2))`` and ``fw = floor(8/max(w, 2))``. Bit Fusion's smallest unit is 2
    bits, so 1-bit operands compute as 2-bit ones; bits 5..8 run as 8 and 3 as 4. The layer is
    simulated with ``Cin' = ceil(Cin/fa)`` and ``Cout' = ceil(Cout/fw)`` (per group), so one
    simulated input channel holds ``Cin/Cin'`` real ones and one simulated filter ``Cout/Cout'``
    real filters. A depthwise layer (one channel per group) gains nothing: ``Cin/Cin' = 1``.
    Without ``bitfusion`` both ratios are 1.
Memory (``packing``: values stored densely at their own width)
    A b-bit value takes b bits in SRAM and on the DRAM interface: 8/b per byte, 3-bit values
    8/3 per byte, 1-bit values 8 per byte (memory has no BitBrick). Without ``packing`` a value
    takes a byte whatever its bits.
Outputs
    Leave the array as 8-bit words (they are requantized on the next layer's input side).

So one simulated element takes ``(Cin/Cin') * sa`` bits (ifmap), ``(Cin/Cin') * (Cout/Cout') * sw``
bits (filter) and ``(Cout/Cout') * 8`` bits (ofmap), with ``sa``, ``sw`` the stored bits of one
activation and one weight. Each operand's SRAM capacity and DRAM bandwidth in elements are its
bytes (bytes per cycle) times 8 over those bits, rounded down. Each effect is counted once:
fusion packs what it fuses (and no more), packing packs the rest. On ``lowmem`` (16 KB SRAMs,
8 B/cycle) a 512->512 layer at w8/a2 has 4 activations per input element (8 bits: 16,384
elements, 8 a cycle) and 4 weights per filter element (32 bits: 4,096 elements, 2 a cycle), so
the weight bytes moved are those of 8-bit weights, as they must be; at w3/a3 an input element
is 6 bits (21,845 elements, 10 a cycle), a filter element 12 bits; a depthwise layer at a2 gains
no compute from fusion but stores 4 activations per byte.

Every layer's DRAM floor, the cycles to read each weight and input byte once through the
interface (:func:`dram_floor_cycles`), bounds the latency from below: SCALE-Sim fills the active
half of each read buffer before its cycle 0, and the backends add that preload
(:func:`hw_backends.scalesim_memory.preload_cycles`) so that no layer is reported faster than its own data can arrive.
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
BITBRICK_BITS = 2  # Bit Fusion's smallest unit: 1-bit operands compute as 2-bit


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
    """Low-bit operands one 8-bit Bit Fusion lane holds: ``floor(8/max(bits, 2))``.

    Bit Fusion's BitBricks are 2 bits wide, so 1-bit operands run as 2-bit ones.
    """
    return WORD_BITS // max(bits, BITBRICK_BITS)


@dataclasses.dataclass(frozen=True)
class ElementBits:
    """What one simulated element of each operand holds (see the module docstring).

    Attributes:
        channels / filters: ``Cin'`` and ``Cout'`` per group after fusion.
        per_input / per_output: Real input (output) channels one simulated channel holds:
            ``Cin_g / Cin'`` and ``Cout_g / Cout'`` (1 without ``bitfusion``; at most ``fa``, ``fw``).
        ifmap / filter / ofmap: Bits of memory one simulated input, filter and output element takes.
    """

    channels: int
    filters: int
    per_input: float
    per_output: float
    ifmap: float
    filter: float
    ofmap: float


def element_bits(layer: Layer, profile: Profile, weight_bits: int, act_bits: int) -> ElementBits:
    """How many real values and bits one simulated element holds, for this layer, profile and bits.

    Args:
        layer: The layer (its channels per group decide how much fusion packs).
        profile: The hardware profile (its ``precision``).
        weight_bits: Weight bits (already validated).
        act_bits: Input-activation bits (already validated).

    Returns:
        The :class:`ElementBits`.
    """
    channels, filters = layer.in_channels // layer.groups, layer.out_channels // layer.groups
    fused_channels, fused_filters = channels, filters
    if profile.uses_bitfusion:
        fused_channels = math.ceil(channels / fused_factor(act_bits))
        fused_filters = math.ceil(filters / fused_factor(weight_bits))
    stored_a, stored_w = (act_bits, weight_bits) if profile.uses_packing else (WORD_BITS, WORD_BITS)
    per_input, per_output = channels / fused_channels, filters / fused_filters
    return ElementBits(channels=fused_channels, filters=fused_filters, per_input=per_input,
                       per_output=per_output, ifmap=per_input * stored_a,
                       filter=per_input * per_output * stored_w, ofmap=per_output * WORD_BITS)


def packed_elements(words: float, bits: float) -> int:
    """Elements of ``bits`` width that fit in ``words`` 8-bit words (at least 1)."""
    return max(1, math.floor(words * WORD_BITS / bits + 1e-9))


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
    bits = element_bits(layer, profile, weight_bits, act_bits)
    sram, dram = profile.sram, profile.dram
    spec = SimSpec(
        ifmap_h=(layer.out_h - 1) * layer.stride_h + layer.kernel_h,
        ifmap_w=(layer.out_w - 1) * layer.stride_w + layer.kernel_w,
        filter_h=layer.kernel_h, filter_w=layer.kernel_w,
        channels=bits.channels, num_filters=bits.filters,
        stride_h=layer.stride_h, stride_w=layer.stride_w,
        ifmap_sram=packed_elements(sram.ifmap_kb * 1024, bits.ifmap),
        filter_sram=packed_elements(sram.filter_kb * 1024, bits.filter),
        ofmap_sram=packed_elements(sram.ofmap_kb * 1024, bits.ofmap),
        ifmap_bw=packed_elements(dram.ifmap_words_per_cycle, bits.ifmap),
        filter_bw=packed_elements(dram.filter_words_per_cycle, bits.filter),
        ofmap_bw=packed_elements(dram.ofmap_words_per_cycle, bits.ofmap),
    )
    return SimJob(spec=spec, repeats=layer.groups)


def dram_floor_cycles(layer: Layer, profile: Profile, weight_bits: int, act_bits: int) -> int:
    """Cycles to read every weight and input byte of ``layer`` once through the DRAM interface.

    Values are counted at their stored width (their own bits with ``packing``, a byte
    otherwise); the ifmap and filter interfaces run in parallel, so the floor is the
    slower of the two. Padding is not read, and rows and columns the convolution skips (a
    stride that does not divide the input) are not counted.

    Args:
        layer: The layer.
        profile: The hardware profile.
        weight_bits: Weight bits (already validated).
        act_bits: Input-activation bits (already validated).

    Returns:
        ``max(ceil(input bytes / ifmap B/cycle), ceil(weight bytes / filter B/cycle))``.
    """
    bits = element_bits(layer, profile, weight_bits, act_bits)
    stored_a, stored_w = bits.ifmap / bits.per_input, bits.filter / (bits.per_input * bits.per_output)
    rows = max(1, min(layer.in_h, (layer.out_h - 1) * layer.stride_h + layer.kernel_h - layer.pad_h))
    cols = max(1, min(layer.in_w, (layer.out_w - 1) * layer.stride_w + layer.kernel_w - layer.pad_w))
    input_bits = layer.in_channels * rows * cols * stored_a
    weight_bits_total = layer.weight_count * stored_w
    dram = profile.dram
    return max(math.ceil(input_bits / (WORD_BITS * dram.ifmap_words_per_cycle)),
               math.ceil(weight_bits_total / (WORD_BITS * dram.filter_words_per_cycle)))
