"""Latency of a quantized model's bit allocations: one backend table, read by everyone.

A :class:`LatencyTable` asks the hardware backend once for every layer at every bit pair the
model's knobs can take; the job's objective, the report and the peer strategies then add table
entries instead of simulating. A knob left in float by the policy runs at 8 bits on the
accelerator models (:data:`FLOAT_AS_BITS`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from brevitas_amed.quant.model import QuantizedModel
from hw_backends.base import Backend
from hw_backends.workload import Workload

FLOAT_AS_BITS = 8
REFERENCE_BITS = (8, 8)


def layer_bits(qmodel: QuantizedModel, knob_bits: Mapping[str, int] | None = None) -> dict[str, tuple[int, int]]:
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


def side_options(qmodel: QuantizedModel, knob: str | None) -> tuple[int, ...]:
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


class LatencyTable:
    """Cycles of every layer of ``qmodel`` at every bit pair its knobs can take.

    Built with one ``backend.layer_table`` call over the union of the knobs' choices, their
    fixed bits and 8 (the uniform 8-bit reference), so every later question is a lookup.

    Args:
        qmodel: The quantized model.
        workload: ``qmodel.workload(input_shape)``: its layer shapes.
        backend: The hardware backend.
        progress: Show the backend's progress bar while simulating.

    Raises:
        ValueError: If ``workload`` does not have exactly ``qmodel``'s compute layers.
        SimulationError: If the backend cannot cost a layer.
    """

    def __init__(self, qmodel: QuantizedModel, workload: Workload, backend: Backend, progress: bool = False) -> None:
        if sorted(workload.names) != sorted(qmodel.layers):
            raise ValueError(f"workload {workload.name!r} has layers {workload.names}, the model has "
                             f"{qmodel.layers}; build it with qmodel.workload(input_shape)")
        self.qmodel, self.workload, self.backend = qmodel, workload, backend
        fixed = {knob.fixed for knob in qmodel.knobs.values() if knob.fixed is not None}
        extra = fixed | {FLOAT_AS_BITS, *REFERENCE_BITS}
        self.weight_bits = sorted({b for k in qmodel.knobs.values() if k.kind == "weight" for b in k.choices} | extra)
        self.act_bits = sorted({b for k in qmodel.knobs.values() if k.kind == "act" for b in k.choices} | extra)
        table = backend.layer_table(workload, self.weight_bits, self.act_bits, progress=progress)
        self.table: dict[str, dict[tuple[int, int], int]] = {
            layer: {pair: cost.cycles for pair, cost in costs.items()} for layer, costs in table.items()}

    def __repr__(self) -> str:
        return (f"LatencyTable({self.workload.name!r}, {self.backend!r}, {len(self.table)} layers x "
                f"{len(self.weight_bits) * len(self.act_bits)} bit pairs)")

    def per_layer(self, knob_bits: Mapping[str, int] | None = None) -> dict[str, int]:
        """Cycles per layer, in execution order.

        Args:
            knob_bits: Bits of some knobs; the others count at their current bits.
        """
        bits = layer_bits(self.qmodel, knob_bits)
        return {layer.name: self.table[layer.name][bits[layer.name]] for layer in self.workload.layers}

    def cycles(self, knob_bits: Mapping[str, int] | None = None) -> int:
        """Total cycles (layers run one after another); arguments as for :meth:`per_layer`."""
        return sum(self.per_layer(knob_bits).values())

    def seconds(self, knob_bits: Mapping[str, int] | None = None) -> float:
        """Total latency in seconds at the backend profile's clock."""
        return self.cycles(knob_bits) / self.backend.profile.clock_hz

    @property
    def reference(self) -> int:
        """Total cycles of the uniform 8-bit model (every layer at 8-bit weights and inputs)."""
        return sum(self.table[layer.name][REFERENCE_BITS] for layer in self.workload.layers)

    def pair_cycles(self, layer: str) -> dict[tuple[int, int], int]:
        """``{(weight_bits, act_bits): cycles}`` of one layer over the pairs its knobs can take.

        Raises:
            KeyError: Unknown layer.
        """
        w_knob, a_knob = self.qmodel.layer_knobs[layer]
        costs = self.table[layer]
        return {(w, a): costs[(w, a)] for w in side_options(self.qmodel, w_knob)
                for a in side_options(self.qmodel, a_knob)}

    def widest_per_level(self, space: Mapping[str, Sequence[int]], weights: bool = True) -> dict[str, tuple[int, ...]]:
        """Each knob's choices less those a wider choice makes redundant: a width is dropped when
        the next wider choice is no slower on any layer the knob feeds, whatever bits the layer's
        other side takes (Bit Fusion runs 5..8 bits as 8; SCALE-Sim's memory transfers often do not
        change with a bit). At equal latency the narrower width can only cost accuracy, so what is
        left is the widest choice of each latency level.

        Args:
            space: ``{knob: choices}``, for example ``qmodel.search_space()``.
            weights: Reduce weight knobs too; ``False`` keeps all of their choices (under a size
                limit a narrower weight is smaller, so it is not redundant).

        Returns:
            ``{knob: kept choices}`` in ascending order, for every knob of ``space``; a knob that
            feeds no layer keeps only its widest choice.
        """
        feeds: dict[str, list[tuple[str, int]]] = {}
        for layer, (w_knob, a_knob) in self.qmodel.layer_knobs.items():
            for side, knob in enumerate((w_knob, a_knob)):
                if knob is not None:
                    feeds.setdefault(knob, []).append((layer, side))

        def row(knob: str, bits: int) -> list[int]:
            cycles = []
            for layer, side in feeds.get(knob, []):
                other = side_options(self.qmodel, self.qmodel.layer_knobs[layer][1 - side])
                cycles += [self.table[layer][(bits, o) if side == 0 else (o, bits)] for o in other]
            return cycles

        reduced = {}
        for knob, choices in space.items():
            ordered = sorted(choices)
            if not weights and self.qmodel.knobs[knob].kind == "weight":
                reduced[knob] = tuple(ordered)
                continue
            rows = [row(knob, b) for b in ordered]
            reduced[knob] = tuple(b for i, b in enumerate(ordered)
                                  if i == len(ordered) - 1 or any(w > n for n, w in zip(rows[i], rows[i + 1])))
        return reduced
