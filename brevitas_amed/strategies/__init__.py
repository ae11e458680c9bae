"""Peer mixed-precision strategies, run the same way as AMED so the job can compare them.

Every strategy module exposes one entry point::

    propose(ctx: StrategyContext, n_points: int = ...) -> list[dict[str, int]]

It returns distinct bit allocations over the model's searchable knobs (``{knob: bits}``, the
mapping :meth:`QuantizedModel.set_knob_bits` takes), fastest first: a front the job then
fine-tunes, evaluates and reports like AMED's best trials. A strategy never fine-tunes and leaves
the model's weights, scales and bits as it found them.

* :mod:`brevitas_amed.strategies.ohq`: per-knob sensitivity without training, bits by integer
  linear programming under a latency budget (OHQ, Huang et al., arXiv 2309.01945).
* :mod:`brevitas_amed.strategies.differentiable`: bit widths learned by gradient under a ramped
  latency or size penalty (Schaefer et al., arXiv 2206.07741).

Latency is counted as the hardware backends count it, through the job's
:class:`~brevitas_amed.quant.LatencyTable`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from torch import nn

from brevitas_amed.quant import LatencyTable, QuantizedModel


@dataclasses.dataclass
class StrategyContext:
    """Everything a strategy may use; the job builds one and hands it to every strategy.

    Attributes:
        qmodel: The calibrated :class:`~brevitas_amed.quant.QuantizedModel`.
        float_model: The trained float model ``qmodel`` was made from (OHQ's reference).
        latency: The :class:`~brevitas_amed.quant.LatencyTable` of ``qmodel`` on the job's
            hardware backend.
        train_loader: Batches of ``(inputs, targets)`` for training and calibration.
        val_loader: Held-out batches (strategies may ignore it).
        calib_batches: How many ``train_loader`` batches sensitivity measurements use.
        size_limit_bits: Hard limit on the weights' size in bits (as
            :meth:`QuantizedModel.weight_size_bits` counts it), or ``None``.
        seed: Seed for anything random a strategy does.
    """

    qmodel: QuantizedModel
    float_model: nn.Module
    latency: LatencyTable
    train_loader: Any = None
    val_loader: Any = None
    calib_batches: int = 4
    size_limit_bits: float | None = None
    seed: int = 0


def distinct(allocations: Iterable[Mapping[str, int]]) -> list[dict[str, int]]:
    """Allocations with repeats removed, first occurrence kept."""
    seen: set[tuple] = set()
    out = []
    for allocation in allocations:
        key = tuple(sorted(allocation.items()))
        if key not in seen:
            seen.add(key)
            out.append(dict(allocation))
    return out


def check_latency_table(qmodel: QuantizedModel, latency: LatencyTable) -> None:
    """Raise ``ValueError`` unless ``latency`` was built for ``qmodel``."""
    if latency.qmodel is not qmodel:
        raise ValueError("the latency table was built for another model; build it with "
                         "LatencyTable(qmodel, qmodel.workload(input_shape), backend)")


__all__ = ["StrategyContext", "check_latency_table", "distinct"]
