"""The WS ifmap read buffer when the im2col stream holds several copies of a pixel (kernel > stride).

SCALE-Sim's read buffer serves a demanded address if *any* copy of it lies in its window. With
overlapping convolution windows a pixel appears up to ``ceil(kh/sh) * ceil(kw/sw)`` times in the
stream, and a copy demanded earlier often still sits in the window: fewer misses than the
one-copy replay of :mod:`hw_backends.scalesim_reads` counts. This module replays the window
element by element on numpy arrays of SCALE-Sim's own ifmap addresses (the formula of
``scalesim/compute/operand_matrix.py``), in chunks from one miss to the next. It is exact, and
used up to :data:`MAX_ELEMENTS` demanded elements (all passes); longer streams fall back to the
one-copy replay, which counts too many misses when old copies stay in the window.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from hw_backends.folding import Folding
from hw_backends.precision import SimSpec
from hw_backends.scalesim_reads import ReadBuffer

MAX_ELEMENTS = 150_000  # demanded elements over all passes; beyond, the one-copy replay
CHUNK = 1024


def has_copies(spec: SimSpec) -> bool:
    """Whether neighbouring convolution windows overlap (the im2col stream repeats pixels)."""
    return spec.filter_h > spec.stride_h or spec.filter_w > spec.stride_w


def _pass_arrays(spec: SimSpec, fold: Folding, rows: int, set_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For one pass in demand order: every copy's set of each demanded element, and its line."""
    temporal, folds = fold.temporal, fold.row_folds
    r = np.repeat(np.arange(folds * temporal), rows)
    c = np.tile(np.arange(rows), folds * temporal)
    row_fold = r // temporal
    width = np.where(row_fold < folds - 1, rows, fold.spatial_rows - (folds - 1) * rows)
    keep = c < width
    r, c, row_fold = r[keep], c[keep], row_fold[keep]
    t, window = r - row_fold * temporal, row_fold * rows + c
    out_w = math.ceil((spec.ifmap_w - spec.filter_w + spec.stride_w) / spec.stride_w)
    out_row, out_col = np.divmod(t, out_w)
    k_row, rest = np.divmod(window, spec.filter_w * spec.channels)
    k_col, channel = np.divmod(rest, spec.channels)
    address = ((out_row * spec.stride_h + k_row) * spec.ifmap_w + out_col * spec.stride_w + k_col) * spec.channels + channel
    position = np.empty(len(r), dtype=np.int64)
    position[np.lexsort((-r, r + c))] = np.arange(len(r))  # anti-diagonals, rows descending
    sets = position // set_size
    unique, inverse = np.unique(address, return_inverse=True)
    order = np.lexsort((sets, inverse))
    counts = np.bincount(inverse, minlength=len(unique))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    copies = np.full((len(unique), int(counts.max())), -1, dtype=np.int64)
    copies[inverse[order], np.arange(len(r)) - starts[inverse[order]]] = sets[order]
    demand = np.lexsort((c, t + c, row_fold))
    lines = row_fold * fold.fold_lines + rows + t + c
    return copies[inverse[demand]], lines[demand]


def copy_aware_misses(buffer: ReadBuffer, fold: Folding, rows: int, spec: SimSpec) -> Iterator[tuple[int, int]]:
    """Demand line and count of the slides of the WS ifmap window, every copy credited.

    Args:
        buffer: The ifmap read buffer.
        fold: The convolution's folding.
        rows: Array rows.
        spec: The convolution (its geometry gives SCALE-Sim's addresses).

    Yields:
        ``(line, slides)`` in demand order.
    """
    if buffer.slide == 0:
        return
    copies, lines = _pass_arrays(spec, fold, rows, buffer.set_size)
    present = copies >= 0
    start, sets, active, slide = 0, buffer.sets, buffer.active, buffer.slide
    pass_lines = fold.row_folds * fold.fold_lines
    for col_fold in range(fold.col_folds):
        index = 0
        while index < len(lines):
            chunk = slice(index, min(len(lines), index + CHUNK))
            hit = (((copies[chunk] - start) % sets < active) & present[chunk]).any(axis=1)
            if hit.all():
                index = chunk.stop
                continue
            miss = index + int(np.argmin(hit))
            distance = (copies[miss][present[miss]] - start) % sets
            count = int(np.min(-(-(distance - active + 1) // slide)))
            start = (start + count * slide) % sets
            yield col_fold * pass_lines + int(lines[miss]), count
            index = miss + 1
