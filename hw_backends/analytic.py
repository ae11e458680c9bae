"""A closed-form model of SCALE-Sim's systolic arrays: exact with ideal bandwidth, microseconds a layer.

SCALE-Sim maps a convolution onto an ``R x C`` array as a matrix product with spatial sizes
``Sr x Sc`` and temporal size ``T``:

====  ==============  ==============  ==============
flow  Sr              Sc              T
====  ==============  ==============  ==============
os    output pixels   filters         window (kh*kw*Cin)
ws    window          filters         output pixels
is    window          output pixels   filters
====  ==============  ==============  ==============

It cuts the product into ``ceil(Sr/R) * ceil(Sc/C)`` folds. Each fold's operand demand matrices
have ``R + C + T - 2`` rows for OS (fill skew + stream + drain) and ``2R + C + T - 2`` for WS and IS
(plus ``R`` rows to load the stationary operand); the memory model serves one row per cycle and,
with ideal bandwidth, never stalls, so SCALE-Sim's Total Cycles is::

    folds * (R + C + T - 2 [+ R for ws/is]) - 1

This is checked against SCALE-Sim on every distinct ResNet-18 layer (``benchmarks/latency.py``)
and on small layers of every dataflow in the tests.

With finite bandwidth (``dram.mode: user``) the model adds a documented approximation: each
operand's DRAM traffic is its prefetch stream (im2col operand matrix, padded to the array edge)
times the passes the fold order makes over it (one pass when it fits in the active half of its
double-buffered SRAM) less the active half SCALE-Sim fills before the layer starts, the ofmap
traffic is every partial-sum write, and the layer takes
``max(compute cycles, traffic / bandwidth for each operand)``. SCALE-Sim's read buffers also
re-fetch a whole pass when a skewed demand falls just behind their prefetch window, which this
bound does not model: it tends to under-estimate memory-bound layers with tiny SRAMs.
``benchmarks/latency.py`` measures its error.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Iterator, Mapping

from hw_backends.base import Backend
from hw_backends.precision import SimSpec
from hw_backends.profile import Profile
from hw_backends.report import LayerLatency


@dataclasses.dataclass(frozen=True)
class Folding:
    """How SCALE-Sim folds one convolution onto the array."""

    spatial_rows: int
    spatial_cols: int
    temporal: int
    row_folds: int
    col_folds: int
    output_pixels: int
    window: int


def folding(spec: SimSpec, profile: Profile) -> Folding:
    """SCALE-Sim's ``Sr``, ``Sc``, ``T`` and fold counts for ``spec`` on ``profile``'s array.

    Args:
        spec: The convolution (output size rounds up, as in SCALE-Sim's topology parser).
        profile: The hardware profile (array and dataflow).

    Returns:
        The :class:`Folding`.
    """
    out_h = math.ceil((spec.ifmap_h - spec.filter_h + spec.stride_h) / spec.stride_h)
    out_w = math.ceil((spec.ifmap_w - spec.filter_w + spec.stride_w) / spec.stride_w)
    pixels = out_h * out_w
    window = spec.filter_h * spec.filter_w * spec.channels
    sr, sc, t = {"os": (pixels, spec.num_filters, window),
                 "ws": (window, spec.num_filters, pixels),
                 "is": (window, pixels, spec.num_filters)}[profile.dataflow]
    rows, cols = profile.array.rows, profile.array.cols
    return Folding(sr, sc, t, math.ceil(sr / rows), math.ceil(sc / cols), pixels, window)


def compute_cycles(fold: Folding, profile: Profile) -> int:
    """SCALE-Sim's Total Cycles with ideal bandwidth (exact)."""
    rows, cols = profile.array.rows, profile.array.cols
    per_fold = rows + cols + fold.temporal - 2 + (rows if profile.dataflow in ("ws", "is") else 0)
    return fold.row_folds * fold.col_folds * per_fold - 1


def memory_cycles(fold: Folding, spec: SimSpec, profile: Profile) -> int:
    """Cycles the slowest operand interface needs for its DRAM traffic (approximation).

    Args:
        fold: The convolution's folding.
        spec: The convolution with its packed SRAM capacities and bandwidths.
        profile: The hardware profile.

    Returns:
        ``max`` over ifmap, filter and ofmap of ``ceil(traffic / bandwidth)``.
    """
    rows, cols = profile.array.rows, profile.array.cols
    streamed = fold.row_folds * rows * fold.temporal      # operand fed along the array rows
    stationary = fold.col_folds * cols * fold.spatial_rows  # operand held in the PEs
    if profile.dataflow == "os":
        ifmap = _traffic(streamed, fold.col_folds, spec.ifmap_sram)
        filters = _traffic(fold.col_folds * cols * fold.temporal, fold.row_folds, spec.filter_sram,
                           chunk=cols * fold.temporal)
        ofmap = fold.spatial_rows * fold.spatial_cols
    else:
        stream_sram, stationary_sram = ((spec.ifmap_sram, spec.filter_sram) if profile.dataflow == "ws"
                                        else (spec.filter_sram, spec.ifmap_sram))
        streamed_traffic = _traffic(streamed, fold.col_folds, stream_sram)
        stationary_traffic = _traffic(stationary, 1, stationary_sram)
        ifmap, filters = ((streamed_traffic, stationary_traffic) if profile.dataflow == "ws"
                          else (stationary_traffic, streamed_traffic))
        ofmap = fold.row_folds * fold.temporal * fold.spatial_cols
    return max(math.ceil(ifmap / spec.ifmap_bw), math.ceil(filters / spec.filter_bw),
               math.ceil(ofmap / spec.ofmap_bw))


def _traffic(stream: int, passes: int, sram: int, chunk: int | None = None) -> int:
    """Elements fetched while the layer runs for a stream read ``passes`` times.

    The stream is read once if its reused part (``chunk``, the whole stream when ``None``) fits
    in the active half of the double-buffered SRAM, else ``passes`` times. SCALE-Sim fills the
    active half before the layer starts, so that part costs no cycles.
    """
    active = math.ceil(sram / 2)
    reused = stream if chunk is None else chunk
    total = stream if reused <= active else stream * passes
    return max(0, total - active)


def estimate(spec: SimSpec, profile: Profile) -> LayerLatency:
    """Cycles, stalls, utilisation and mapping efficiency of one run of ``spec``.

    Args:
        spec: The convolution.
        profile: The hardware profile.

    Returns:
        A :class:`LayerLatency` for one run.
    """
    fold = folding(spec, profile)
    compute = compute_cycles(fold, profile)
    cycles = compute if profile.dram.mode == "calc" else max(compute, memory_cycles(fold, spec, profile))
    pes = profile.array.rows * profile.array.cols
    macs = fold.output_pixels * fold.window * spec.num_filters
    mapping = (fold.spatial_rows * fold.spatial_cols) / (fold.row_folds * fold.col_folds * pes)
    return LayerLatency(cycles=cycles, stall_cycles=cycles - compute, utilization=macs / (cycles * pes),
                        mapping_efficiency=mapping)


class AnalyticBackend(Backend):
    """Closed-form SCALE-Sim: exact Total Cycles with ideal bandwidth, approximate stalls otherwise.

    Args:
        profile: A shipped profile name, a path to a profile YAML, or a :class:`Profile`.

    Raises:
        ProfileError: If the profile cannot be loaded.
    """

    name = "analytic"
    version = "1"

    def __init__(self, profile: "str | Path | Profile" = "scalesim") -> None:
        super().__init__(profile)  # microseconds a layer, less than a database read: no persistent cache

    def simulate_specs(self, specs: Mapping[SimSpec, str], progress: bool) -> Iterator[tuple[SimSpec, LayerLatency]]:
        for spec in specs:
            yield spec, estimate(spec, self.profile)
