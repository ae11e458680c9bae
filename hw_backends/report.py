"""Latency reports returned by every backend."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LayerLatency:
    """Cost of one layer at one bit allocation.

    Attributes:
        cycles: Total cycles, stalls included (SCALE-Sim's "Total Cycles" summed over the
            independent sub-convolutions a grouped layer is split into).
        stall_cycles: Cycles lost waiting for memory (0 with ideal bandwidth).
        utilization: Fraction of the PE array doing useful MACs over the layer's cycles.
        mapping_efficiency: Average fraction of PEs the layer's folds map onto.
        simulations: Number of identical sub-convolutions simulated once and multiplied
            (``groups`` for grouped and depthwise convolutions, else 1).
    """

    cycles: int
    stall_cycles: int = 0
    utilization: float = 0.0
    mapping_efficiency: float = 0.0
    simulations: int = 1

    @property
    def compute_cycles(self) -> int:
        """Cycles spent computing, stalls excluded."""
        return self.cycles - self.stall_cycles


@dataclasses.dataclass(frozen=True)
class LatencyReport:
    """Latency of a whole workload at one bit allocation.

    Attributes:
        cycles: Sum of the layers' cycles (layers run one after another).
        seconds: ``cycles / clock_hz`` of the profile.
        per_layer: ``{layer_name: LayerLatency}`` in execution order.
        backend: Name of the backend that produced the report.
        profile: Name of the hardware profile.
    """

    cycles: int
    seconds: float
    per_layer: dict[str, LayerLatency]
    backend: str
    profile: str

    @property
    def stall_cycles(self) -> int:
        """Cycles lost to memory stalls over all layers."""
        return sum(layer.stall_cycles for layer in self.per_layer.values())
