"""How SCALE-Sim folds one convolution onto a systolic array, and its ideal-bandwidth cycles.

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
"""

from __future__ import annotations

import dataclasses
import math

from hw_backends.precision import SimSpec
from hw_backends.profile import Profile


@dataclasses.dataclass(frozen=True)
class Folding:
    """How SCALE-Sim folds one convolution onto the array.

    Attributes:
        spatial_rows / spatial_cols / temporal: ``Sr``, ``Sc``, ``T`` of the table above.
        row_folds / col_folds: ``ceil(Sr/R)``, ``ceil(Sc/C)``.
        output_pixels / window: Output pixels and ``kh*kw*Cin`` of the simulated convolution.
        fold_lines: Demand lines (cycles) of one fold.
    """

    spatial_rows: int
    spatial_cols: int
    temporal: int
    row_folds: int
    col_folds: int
    output_pixels: int
    window: int
    fold_lines: int

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds


def folding(spec: SimSpec, profile: Profile) -> Folding:
    """SCALE-Sim's ``Sr``, ``Sc``, ``T``, fold counts and fold length for ``spec`` on ``profile``.

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
    lines = rows + cols + t - 2 + (rows if profile.dataflow in ("ws", "is") else 0)
    return Folding(sr, sc, t, math.ceil(sr / rows), math.ceil(sc / cols), pixels, window, lines)


def compute_cycles(fold: Folding, profile: Profile) -> int:
    """SCALE-Sim's Total Cycles with ideal bandwidth (exact)."""
    return fold.folds * fold.fold_lines - 1
