"""SCALE-Sim 3's double-buffered read SRAMs (``scalesim/memory/read_buffer.py``), replayed slide by slide.

A read buffer cuts its operand's prefetch stream (the valid elements, in the order the compute
model lists them) into hashed sets of ``E = ceil(S/100)`` elements; its active window holds ``A``
sets and a miss slides it (cyclically) by ``P <= A`` sets. Which demand line misses, and how many
slides it needs, follows from where each demanded element sits in the stream. WS only: the
filter stream (column fold after column fold, each fold's rows demanded last to first in its
first ``R`` lines) and the ifmap stream (row folds stacked and read along anti-diagonals, once per
column fold). A fold whose rows straddle the window when it slides falls behind it: SCALE-Sim
then slides all the way round the stream, re-fetching it whole, and so does this replay.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

from hw_backends.folding import Folding
from hw_backends.precision import SimSpec
from hw_backends.profile import Profile
from hw_backends.scalesim_writes import ramp


@dataclasses.dataclass(frozen=True)
class ReadBuffer:
    """One double-buffered read SRAM as SCALE-Sim sizes it for one prefetch stream.

    Attributes:
        set_size: Elements per hashed set (``E``).
        sets: Sets in the stream (``L``).
        active: Sets in the active window (``A``).
        slide: Sets one prefetch slides the window by (``P``; 0 when the stream fits).
        request: DRAM cycles one prefetch advances the interface by (``n + 1``).
        preload: Lines of the fill before cycle 0.
    """

    set_size: int
    sets: int
    active: int
    slide: int
    request: int
    preload: int

    @classmethod
    def of(cls, sram: int, bandwidth: int, valid: int, fetched: int) -> "ReadBuffer":
        """The buffer for a stream of ``valid`` elements listed in ``fetched`` slots (with gaps)."""
        active_elems = math.ceil(sram * 0.5)
        prefetch_elems = sram - active_elems
        set_size = math.ceil(sram / 100)
        sets = valid // set_size + 1
        active = min(sets, math.ceil(active_elems / set_size))
        slide = min(sets - active, math.ceil(prefetch_elems / set_size))
        preload = min(math.ceil(active_elems / bandwidth), math.ceil(fetched / bandwidth))
        return cls(set_size, sets, active, slide, math.ceil(prefetch_elems / bandwidth) + 1, preload)

    def misses(self, passes: int = 1) -> int:
        """Prefetches needed to read the stream ``passes`` times."""
        if self.slide == 0:
            return 0
        return max(0, math.ceil((passes * self.sets - self.active) / self.slide))


def read_buffers(spec: SimSpec, fold: Folding, profile: Profile) -> tuple[ReadBuffer, ReadBuffer]:
    """The ifmap and filter read buffers of ``spec`` (in that order).

    Args:
        spec: The convolution with its SRAM sizes and bandwidths in elements.
        fold: Its folding.
        profile: The hardware profile.

    Returns:
        ``(ifmap, filter)`` :class:`ReadBuffer`.
    """
    rows, cols = profile.array.rows, profile.array.cols
    if profile.dataflow == "os":
        ifmap = ReadBuffer.of(spec.ifmap_sram, spec.ifmap_bw, fold.spatial_rows * fold.temporal,
                              fold.row_folds * rows * fold.temporal)
        filters = ReadBuffer.of(spec.filter_sram, spec.filter_bw, fold.spatial_cols * fold.temporal,
                                fold.col_folds * cols * fold.temporal)
        return ifmap, filters
    stationary_bw, streamed_bw = ((spec.filter_bw, spec.ifmap_bw) if profile.dataflow == "ws"
                                  else (spec.ifmap_bw, spec.filter_bw))
    stationary_sram, streamed_sram = ((spec.filter_sram, spec.ifmap_sram) if profile.dataflow == "ws"
                                      else (spec.ifmap_sram, spec.filter_sram))
    stationary = ReadBuffer.of(stationary_sram, stationary_bw, fold.spatial_rows * fold.spatial_cols,
                               fold.col_folds * cols * fold.spatial_rows)
    streamed = ReadBuffer.of(streamed_sram, streamed_bw, fold.spatial_rows * fold.temporal,
                             fold.row_folds * rows * fold.temporal)
    return (streamed, stationary) if profile.dataflow == "ws" else (stationary, streamed)


class Window:
    """A read buffer's active window over its ``sets`` (cyclic), slid as SCALE-Sim slides it."""

    def __init__(self, buffer: ReadBuffer) -> None:
        self.buffer = buffer
        self.start = 0
        self.slides = 0

    def offset(self, set_index: int) -> int:
        return (set_index - self.start) % self.buffer.sets

    def demand(self, set_index: int) -> int:
        """Slides needed to serve an element of ``set_index`` (the window moves).

        The window moves ``P <= A`` sets a slide, so the first slide count that covers the set
        is ``ceil((d - A + 1) / P)`` for a set ``d >= A`` sets past the window's start.
        """
        buffer = self.buffer
        distance = (set_index - self.start) % buffer.sets
        if distance < buffer.active or buffer.slide == 0:
            return 0
        count = -(-(distance - buffer.active + 1) // buffer.slide)
        self.start = (self.start + count * buffer.slide) % buffer.sets
        self.slides += count
        return count


def stationary_misses(buffer: ReadBuffer, fold: Folding, rows: int, cols: int) -> Iterator[tuple[int, int]]:
    """Demand line and count of the slides of the stationary operand's window (WS filter, IS ifmap).

    Exact for the WS filter stream: it holds each element once, column fold after column fold,
    and fold ``(fc, fr)`` demands its rows last to first in its first ``R`` lines.

    Args:
        buffer: The operand's read buffer.
        fold: The convolution's folding.
        rows / cols: Array rows and columns.

    Yields:
        ``(line, slides)`` in demand order.
    """
    if buffer.slide == 0:
        return
    window = Window(buffer)
    size = buffer.set_size
    for col_fold in range(fold.col_folds):
        width = min(cols, fold.spatial_cols - col_fold * cols)
        base = col_fold * fold.spatial_rows * cols
        for row_fold in range(fold.row_folds):
            first = row_fold * rows
            used = min(rows, fold.spatial_rows - first)
            low, high = base + first * width, base + (first + used) * width - 1
            top = window.offset(high // size)
            if window.offset(low // size) <= top < buffer.active:
                continue
            start = (col_fold * fold.row_folds + row_fold) * fold.fold_lines + rows - used
            local = used - 1
            while local >= 0:  # rows last to first; rows on the same two sets as a served row hit
                begin = base + (first + local) * width
                low_set, high_set = begin // size, (begin + width - 1) // size
                count = window.demand(low_set) + window.demand(high_set)
                if count:
                    yield start + used - 1 - local, count
                same = 0
                if window.offset(low_set) < buffer.active and window.offset(high_set) < buffer.active:
                    same = min(begin - low_set * size, begin + width - 1 - high_set * size) // width
                local -= same + 1


class DiagonalStream:
    """The WS ifmap prefetch stream: row folds stacked (``T`` rows each), read along anti-diagonals.

    Rows of the last row fold hold only its ``Sr - (folds - 1) * R`` valid columns; positions
    count valid elements, as SCALE-Sim's hashed sets do.
    """

    def __init__(self, fold: Folding, rows: int) -> None:
        self.temporal, self.rows, self.folds = fold.temporal, rows, fold.row_folds
        self.last_width = fold.spatial_rows - (fold.row_folds - 1) * rows
        self.split = (fold.row_folds - 1) * fold.temporal  # first row of the last row fold
        self.height = fold.row_folds * fold.temporal
        self.memo: dict[tuple[int, int], tuple[int, int] | None] = {}

    def _blocks(self) -> tuple[tuple[int, int, int], ...]:
        return ((0, self.split, self.rows), (self.split, self.height, self.last_width))

    def before(self, diagonal: int) -> int:
        """Valid elements on the diagonals before ``diagonal``."""
        total = 0
        for low, high, width in self._blocks():
            if high > low:
                total += ramp(diagonal - low, width) - ramp(diagonal - high, width)
        return total

    def position(self, row: int, col: int) -> int:
        """Stream position of element ``(row, col)`` (rows descend along a diagonal)."""
        diagonal = row + col
        above = 0
        top = min(diagonal, self.height - 1)
        for low, high, width in self._blocks():
            first, last = max(row + 1, low, diagonal - width + 1), min(top, high - 1)
            above += max(0, last - first + 1)
        return self.before(diagonal) + above

    def line(self, row_fold: int, offset: int) -> tuple[int, int] | None:
        """First and last stream positions fold ``row_fold`` demands on its skewed line ``offset``."""
        key = (row_fold, offset)
        if key not in self.memo:
            self.memo[key] = self._line(row_fold, offset)
        return self.memo[key]

    def _line(self, row_fold: int, offset: int) -> tuple[int, int] | None:
        width = self.rows if row_fold < self.folds - 1 else self.last_width
        low, high = max(0, offset - self.temporal + 1), min(offset, width - 1)
        if low > high:
            return None
        base = row_fold * self.temporal + offset
        return self.position(base - low, low), self.position(base - high, high)

    def lines(self, row_fold: int) -> int:
        width = self.rows if row_fold < self.folds - 1 else self.last_width
        return self.temporal + width - 1

    def first_line_reaching(self, row_fold: int, position: int, low: int) -> int | None:
        """Smallest line ``>= low`` of ``row_fold`` whose last position is ``>= position``.

        Last positions grow by about one diagonal of valid elements a line: start from that
        guess and step to the exact line.
        """
        high = self.lines(row_fold) - 1
        if low > high or self.line(row_fold, high)[1] < position:
            return None
        width = self.rows if row_fold < self.folds - 1 else self.last_width
        _first, last = self.line(row_fold, low)
        guess = min(high, max(low, low + (position - last) // width))
        while guess > low and self.line(row_fold, guess - 1)[1] >= position:
            guess -= 1
        while self.line(row_fold, guess)[1] < position:
            guess += 1
        return guess


def streamed_misses(buffer: ReadBuffer, fold: Folding, rows: int) -> Iterator[tuple[int, int]]:
    """Demand line and count of the slides of the WS ifmap window.

    Exact where the im2col stream holds each pixel once (kernel not larger than the stride);
    with overlapping windows a pixel's earlier copy still in the window is not credited (see
    :mod:`hw_backends.scalesim_copies`, which does).

    Args:
        buffer: The ifmap read buffer.
        fold: The convolution's folding.
        rows: Array rows.

    Yields:
        ``(line, slides)`` in demand order.
    """
    if buffer.slide == 0:
        return
    window, stream, size = Window(buffer), DiagonalStream(fold, rows), buffer.set_size
    for col_fold in range(fold.col_folds):
        for row_fold in range(fold.row_folds):
            low = stream.line(row_fold, 0)[0] // size
            if window.offset(low) <= window.offset(stream.line(row_fold, stream.lines(row_fold) - 1)[1] // size) < buffer.active:
                continue  # the whole fold is in the window
            start = (col_fold * fold.row_folds + row_fold) * fold.fold_lines + rows
            offset: int | None = 0
            while offset is not None:
                first, last = stream.line(row_fold, offset)
                count = sum(window.demand(set_index) for set_index in range(first // size, last // size + 1))
                if count:
                    yield start + offset, count
                miss = _next_miss(window, last // size)
                offset = None if miss is None else stream.first_line_reaching(row_fold, miss * size, offset + 1)


def _next_miss(window: Window, current: int) -> int | None:
    """First set after the (in-window) ``current`` that is outside the window, in stream order."""
    start, end = window.start, window.start + window.buffer.active
    if current >= start:
        return end if end < window.buffer.sets else None
    return end - window.buffer.sets
