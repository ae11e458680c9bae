"""Peer mixed-precision strategies, run the same way as AMED so the pipeline can compare them.

Every strategy module exposes one entry point::

    propose(ctx: StrategyContext, n_points: int = ...) -> list[dict[str, int]]

It returns distinct bit allocations over the model's searchable knobs (``{knob: bits}``, the
mapping :meth:`QuantizedModel.set_knob_bits` takes), fastest first: a front the pipeline then
fine-tunes, evaluates and reports like AMED's best trials. A strategy never fine-tunes and leaves
the model's weights, scales and bits as it found them.

* :mod:`brevitas_amed.strategies.ohq`: per-knob sensitivity without training, bits by integer
  linear programming under a latency budget (OHQ, Huang et al., arXiv 2309.01945).
* :mod:`brevitas_amed.strategies.differentiable`: bit widths learned by gradient under a ramped
  latency or size penalty (Schaefer et al., arXiv 2206.07741).

Latency is counted as the hardware backends count it: a knob left in float by the policy runs at
8 bits on the accelerator models (:data:`FLOAT_AS_BITS`).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from hw_backends.base import Backend
from hw_backends.workload import Workload

FLOAT_AS_BITS = 8


@dataclasses.dataclass
class StrategyContext:
    """Everything a strategy may use; the pipeline builds one and hands it to every strategy.

    Attributes:
        qmodel: The calibrated :class:`~brevitas_amed.quantize.QuantizedModel`.
        float_model: The trained float model ``qmodel`` was made from (OHQ's reference).
        workload: ``qmodel.workload(input_shape)``: layer shapes tied to the knobs.
        backend: The hardware backend latency is measured with.
        train_loader: Batches of ``(inputs, targets)`` for training and calibration.
        val_loader: Held-out batches (strategies may ignore it).
        calib_batches: How many ``train_loader`` batches sensitivity measurements use.
        size_limit_bits: Hard limit on the weights' size in bits (as
            :meth:`QuantizedModel.weight_size_bits` counts it), or ``None``.
        seed: Seed for anything random a strategy does.
    """

    qmodel: Any
    float_model: nn.Module
    workload: Workload
    backend: Backend
    train_loader: Any = None
    val_loader: Any = None
    calib_batches: int = 4
    size_limit_bits: float | None = None
    seed: int = 0


def layer_bits(qmodel, knob_bits: Mapping[str, int] | None = None) -> dict[str, tuple[int, int]]:
    """``{layer: (weight_bits, act_bits)}`` for a latency backend, float knobs counted as 8 bits.

    Args:
        qmodel: The quantized model.
        knob_bits: Bits of some knobs; the others keep their current bits.

    Returns:
        Bits for every compute layer of ``qmodel``.
    """
    bits = dict(qmodel.get_knob_bits())
    bits.update(knob_bits or {})

    def of(knob: str | None) -> int:
        value = bits[knob] if knob is not None else None
        return FLOAT_AS_BITS if value is None else int(value)

    return {layer: (of(w), of(a)) for layer, (w, a) in qmodel.layer_knobs.items()}


def side_options(qmodel, knob: str | None) -> tuple[int, ...]:
    """Bit widths one side of a layer can take: a searchable knob's choices, else its one value.

    Args:
        qmodel: The quantized model.
        knob: A layer's weight or input-activation knob (``None``: no quantizer, counted as float).

    Returns:
        The knob's choices if searchable; else its fixed bits, or :data:`FLOAT_AS_BITS` if float.
    """
    if knob is not None and qmodel.knobs[knob].searchable:
        return tuple(qmodel.knobs[knob].choices)
    bits = qmodel.knobs[knob].bits if knob is not None else None
    return (FLOAT_AS_BITS if bits is None else int(bits),)


def take_batches(loader, count: int) -> list[torch.Tensor]:
    """The inputs of the first ``count`` batches of ``loader`` (targets dropped).

    Raises:
        ValueError: If ``count`` is below 1 or the loader yields no batch.
    """
    if count < 1:
        raise ValueError(f"calib_batches must be at least 1, got {count}")
    inputs = [b[0] if isinstance(b, (tuple, list)) else b for b in itertools.islice(iter(loader or ()), count)]
    if not inputs:
        raise ValueError("the data loader yielded no batch; pass a non-empty train_loader")
    return inputs


def distinct(allocations: Iterator[Mapping[str, int]]) -> list[dict[str, int]]:
    """Allocations with repeats removed, first occurrence kept."""
    seen: set[tuple] = set()
    out = []
    for allocation in allocations:
        key = tuple(sorted(allocation.items()))
        if key not in seen:
            seen.add(key)
            out.append(dict(allocation))
    return out


__all__ = ["FLOAT_AS_BITS", "StrategyContext", "distinct", "layer_bits", "side_options", "take_batches"]
