"""A model of SCALE-Sim's systolic arrays: exact with ideal bandwidth, microseconds to milliseconds a layer.

With ideal bandwidth (``dram.mode: calc``) SCALE-Sim's Total Cycles has a closed form
(:mod:`hw_backends.folding`)::

    folds * (R + C + T - 2 [+ R for ws/is]) - 1

checked against SCALE-Sim on every distinct ResNet-18 layer (``benchmarks/latency.py``) and on
small layers of every dataflow in the tests.

With finite bandwidth (``dram.mode: user``) the stall cycles come from
:mod:`hw_backends.scalesim_memory`, which replays SCALE-Sim's read buffers and write buffer one
prefetch and one drain at a time (not one cycle at a time) with its exact set sizes, window
slides, request lengths and stall rules; that module's docstring says where it is approximate.
Its error against real SCALE-Sim is measured by ``benchmarks/latency_fidelity.py`` (0.06% mean on
``lowmem`` at 32x32, 0.13% at 64x64; README quotes the table). A layer costs 1-150 ms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping

from hw_backends.base import Backend
from hw_backends.folding import Folding, compute_cycles, folding
from hw_backends.precision import SimSpec
from hw_backends.profile import Profile
from hw_backends.report import LayerLatency
from hw_backends.scalesim_memory import stall_cycles

__all__ = ["AnalyticBackend", "Folding", "compute_cycles", "estimate", "folding"]


def estimate(spec: SimSpec, profile: Profile) -> LayerLatency:
    """SCALE-Sim's Total Cycles, stalls, utilisation and mapping efficiency of one run of ``spec``.

    Args:
        spec: The convolution.
        profile: The hardware profile.

    Returns:
        A :class:`LayerLatency` for one run (without the preload the backends add).
    """
    fold = folding(spec, profile)
    compute = compute_cycles(fold, profile)
    stalls = 0 if profile.dram.mode == "calc" else stall_cycles(spec, fold, profile)
    cycles = compute + stalls
    pes = profile.array.rows * profile.array.cols
    macs = fold.output_pixels * fold.window * spec.num_filters
    mapping = (fold.spatial_rows * fold.spatial_cols) / (fold.folds * pes)
    return LayerLatency(cycles=cycles, stall_cycles=stalls, utilization=macs / (cycles * pes),
                        mapping_efficiency=mapping)


class AnalyticBackend(Backend):
    """SCALE-Sim without running it: exact Total Cycles with ideal bandwidth, its memory replayed otherwise.

    Args:
        profile: A shipped profile name, a path to a profile YAML, or a :class:`Profile`.

    Raises:
        ProfileError: If the profile cannot be loaded.
    """

    name = "analytic"
    version = "2"

    def __init__(self, profile: "str | Path | Profile" = "scalesim") -> None:
        super().__init__(profile)  # cheaper than a database read: no persistent cache

    def simulate_specs(self, specs: Mapping[SimSpec, str], progress: bool) -> Iterator[tuple[SimSpec, LayerLatency]]:
        for spec in specs:
            yield spec, estimate(spec, self.profile)
