"""SCALE-Sim 3's ofmap write buffer (``scalesim/memory/write_buffer.py``), replayed drain by drain.

Fold ``i`` of a WS or IS layer writes a ``T x W`` block of outputs (``W`` the width of its column
fold) along its skewed diagonals, one diagonal a line, from ``2R - 1`` lines into the fold. The
buffer packs the outputs into lines of ``b`` elements; once it holds more than
``D = S - ceil(S/2)`` and no drain runs, it flushes its partial line and drains the next
``ceil(D/b)`` lines over as many cycles (the last one ends a cycle early: the write port has no
latency). An output arriving while the buffer is full and a drain runs waits for the drain's end;
that wait is a stall of the whole array.
"""

from __future__ import annotations

import collections
import math

from hw_backends.folding import Folding
from hw_backends.precision import SimSpec
from hw_backends.profile import Profile


def ramp(y: int, width: int) -> int:
    """``sum(min(x, width) for x in 1..y)``: elements of a ``width``-wide band on its first ``y``
    diagonals, counted per row."""
    if y <= 0:
        return 0
    return y * (y + 1) // 2 if y <= width else width * (width + 1) // 2 + (y - width) * width


class OutputWrites:
    """The write buffer of one run of a WS or IS convolution, advanced along its demand lines.

    Args:
        spec: The convolution (ofmap SRAM and bandwidth in elements).
        fold: Its folding.
        profile: The hardware profile.
    """

    def __init__(self, spec: SimSpec, fold: Folding, profile: Profile) -> None:
        rows, cols = profile.array.rows, profile.array.cols
        self.fold = fold
        self.size, self.bandwidth = spec.ofmap_sram, spec.ofmap_bw
        self.drain = spec.ofmap_sram - math.ceil(spec.ofmap_sram * 0.5)
        self.lines = math.ceil(self.drain / spec.ofmap_bw)
        self.start = 2 * rows - 1
        self.wide_folds = (fold.col_folds - 1) * fold.row_folds
        self.widths = (cols, fold.spatial_cols - (fold.col_folds - 1) * cols)
        self.total = self.cumulative(fold.folds)
        self.freed = 0
        self.flushed = 0
        self.trace: collections.deque[list[int]] = collections.deque()  # [full lines, partial line]
        self.drain_end = -1

    def width(self, index: int) -> int:
        return self.widths[0] if index < self.wide_folds else self.widths[1]

    def cumulative(self, folds: int) -> int:
        """Outputs of the first ``folds`` folds."""
        wide, last = self.widths
        return self.fold.temporal * (wide * min(folds, self.wide_folds) + last * max(0, folds - self.wide_folds))

    def _in_fold(self, lines: int, width: int) -> int:
        return ramp(lines, width) - ramp(lines - self.fold.temporal, width)

    def written(self, line: int) -> int:
        """Outputs written on nominal lines before ``line``."""
        index, offset = divmod(line, self.fold.fold_lines)
        if index >= self.fold.folds:
            return self.total
        return self.cumulative(index) + self._in_fold(offset - self.start, self.width(index))

    def line_of(self, count: int) -> int:
        """Nominal line on which output number ``count`` (from 1) is written."""
        wide = self.fold.temporal * self.widths[0]
        if count <= wide * self.wide_folds:
            index = (count - 1) // wide
        else:
            index = self.wide_folds + (count - 1 - wide * self.wide_folds) // (self.fold.temporal * self.widths[1])
        need, width = count - self.cumulative(index), self.width(index)
        low, high = 0, self.fold.temporal + width - 2
        while low < high:
            mid = (low + high) // 2
            if self._in_fold(mid + 1, width) >= need:
                high = mid
            else:
                low = mid + 1
        return index * self.fold.fold_lines + self.start + low

    def next_write(self, line: int) -> int:
        """First nominal line at or after ``line`` that writes outputs (past the end: the end)."""
        index, offset = divmod(max(line, 0), self.fold.fold_lines)
        if index >= self.fold.folds:
            return self.fold.folds * self.fold.fold_lines
        if offset < self.start:
            return index * self.fold.fold_lines + self.start
        if offset - self.start < self.fold.temporal + self.width(index) - 1:
            return line
        return self.next_write((index + 1) * self.fold.fold_lines)

    def _start_drain(self, count: int, cycle: int) -> None:
        """Flush the outputs up to number ``count`` into lines, then drain ``self.lines`` of them."""
        fresh = count - self.flushed
        self.trace.append([fresh // self.bandwidth, fresh % self.bandwidth])
        self.flushed = count
        remaining = self.lines
        while remaining and self.trace:
            segment = self.trace[0]
            taken = min(remaining, segment[0])
            self.freed += taken * self.bandwidth
            segment[0] -= taken
            remaining -= taken
            if remaining and segment[1]:
                self.freed += segment[1]
                segment[1] = 0
                remaining -= 1
            if segment == [0, 0]:
                self.trace.popleft()
        self.drain_end = cycle + self.lines - 1

    def advance(self, line: int, stall: int) -> int:
        """Run every drain that starts before nominal ``line``.

        Args:
            line: The next demand line the caller handles.
            stall: Stall cycles accumulated before it.

        Returns:
            The stall with the write buffer's own stalls added.
        """
        while True:
            trigger = self.freed + self.drain + 1
            if trigger > self.total or self.line_of(trigger) >= line:
                return stall
            at = self.line_of(trigger)
            if at + stall >= self.drain_end:
                self._start_drain(trigger, at + stall)
                continue
            full = self.freed + self.size
            resume = self.next_write(self.drain_end - stall)
            if full <= self.total and self.line_of(full) < resume:
                if self.line_of(full) >= line:
                    return stall
                stall = self.drain_end - self.line_of(full)
                if full + 1 > self.total:
                    return stall
                self._start_drain(full + 1, self.line_of(full + 1) + stall)
            else:
                if resume >= line or resume >= self.fold.folds * self.fold.fold_lines:
                    return stall
                self._start_drain(self.written(resume) + 1, resume + stall)
