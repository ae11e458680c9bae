"""SCALE-Sim 3's finite-bandwidth memory system, replayed per prefetch and drain instead of per cycle.

What SCALE-Sim does (``scalesim/memory/read_buffer.py``, ``write_buffer.py``,
``double_buffered_scratchpad_mem.py``), for an operand SRAM of ``S`` elements and ``b`` elements
per cycle:

* Read buffers (ifmap, filter) cut the operand's prefetch stream (its valid elements, in the
  order the compute model lists them) into sets of ``E = ceil(S/100)`` elements; ``L`` sets in
  all (the last one partial or empty). The active window holds ``A = ceil(ceil(S/2)/E)`` sets and
  is filled before cycle 0. A demand for an element outside the window slides it forward
  (cyclically) by ``P = min(ceil((S - ceil(S/2))/E), L - A)`` sets; each slide is one DRAM request
  of ``n = ceil((S - ceil(S/2))/b)`` lines that advances the interface's clock ``lpc`` by
  ``n + 1``, whatever the time (``lpc`` starts at -1). A stream of ``L <= A`` sets never misses.
* A line's read is served at ``out``, starting at ``cycle + 1``; each miss in the line sets
  ``out = lpc + max(0, lpc - out)``: an interface that fell behind is free to catch up, one ahead
  stalls the line twice its lead. The line's stall is ``out - cycle - 1``.
* The write buffer (ofmap) stores outputs until more than ``D = S - ceil(S/2)`` are held, then
  drains ``ceil(D/b)`` lines of ``b`` elements over as many cycles; the array stalls when the
  buffer is full while a drain runs.
* Each demand line adds the largest of its three stalls (never below 0) to all later lines;
  Total Cycles is the last line's cycle.

This module replays those rules event by event: every read-buffer slide
(:mod:`hw_backends.scalesim_reads`, :mod:`hw_backends.scalesim_copies`) and every drain
(:mod:`hw_backends.scalesim_writes`), in demand order, with the demand line of each derived from
the fold structure. It is exact on WS layers whose im2col stream holds each pixel once and on
most others tried; where convolution windows overlap and the stream is longer than
:data:`~hw_backends.scalesim_copies.MAX_ELEMENTS`, a pixel's earlier copy still in the window is
not credited (too many misses). Stalls of different operands on one line are added in turn rather
than maximised (rare). IS is modelled as WS with the operands swapped (exact on the layers tried);
OS streams both operands and is only a bandwidth bound. ``benchmarks/latency_fidelity.py``
measures the error against SCALE-Sim.
"""

from __future__ import annotations

import math

from hw_backends.folding import Folding, folding
from hw_backends.precision import SimSpec
from hw_backends.profile import Profile
from hw_backends.scalesim_copies import MAX_ELEMENTS, copy_aware_misses, has_copies
from hw_backends.scalesim_reads import ReadBuffer, read_buffers, stationary_misses, streamed_misses
from hw_backends.scalesim_writes import OutputWrites

HIT_LATENCY = 1


def preload_cycles(spec: SimSpec, fold: Folding, profile: Profile) -> int:
    """Cycles SCALE-Sim spends before its cycle 0 filling the active halves (ifmap and filter in
    parallel); 0 with ideal bandwidth."""
    if profile.dram.mode == "calc":
        return 0
    ifmap, filters = read_buffers(spec, fold, profile)
    return max(ifmap.preload, filters.preload)


def stall_cycles(spec: SimSpec, fold: Folding, profile: Profile) -> int:
    """Cycles SCALE-Sim's finite-bandwidth memory adds to the compute cycles of one run of ``spec``.

    Args:
        spec: The convolution with its SRAM sizes and bandwidths in elements.
        fold: Its folding.
        profile: The hardware profile (``dram.mode: user``).

    Returns:
        The stall cycles (Total Cycles minus the ideal-bandwidth cycles).
    """
    ifmap, filters = read_buffers(spec, fold, profile)
    if profile.dataflow == "os":
        return _bandwidth_bound(spec, fold, ifmap, filters, profile)
    events, requests = _read_events(spec, fold, profile)
    clocks = [-1, -1]
    writes = OutputWrites(spec, fold, profile)
    stall = 0
    index = 0
    while index < len(events):
        line = events[index][0]
        stall = writes.advance(line, stall)
        cycle = line + stall
        served = [cycle + HIT_LATENCY, cycle + HIT_LATENCY]
        while index < len(events) and events[index][0] == line:
            _line, side, count = events[index]
            clocks[side], served[side] = _serve(clocks[side], served[side], requests[side], count)
            index += 1
        stall += max(0, max(served) - cycle - HIT_LATENCY)
    return writes.advance(fold.folds * fold.fold_lines, stall)


def _read_events(spec: SimSpec, fold: Folding, profile: Profile) -> tuple[list[tuple[int, int, int]], tuple[int, int]]:
    """``(line, side, slides)`` of every read-buffer miss in demand order (side 0: the stationary
    operand, 1: the streamed one), and each side's cycles per slide."""
    rows, cols = profile.array.rows, profile.array.cols
    ifmap, filters = read_buffers(spec, fold, profile)
    stationary, streamed = (filters, ifmap) if profile.dataflow == "ws" else (ifmap, filters)
    if (profile.dataflow == "ws" and has_copies(spec)
            and fold.col_folds * fold.temporal * fold.spatial_rows <= MAX_ELEMENTS and streamed.slide):
        streamed_events = copy_aware_misses(streamed, fold, rows, spec)
    else:
        streamed_events = streamed_misses(streamed, fold, rows)
    events = sorted([(line, 0, count) for line, count in stationary_misses(stationary, fold, rows, cols)]
                    + [(line, 1, count) for line, count in streamed_events])
    return events, (stationary.request, streamed.request)


def prefetch_count(spec: SimSpec, profile: Profile) -> int:
    """DRAM prefetches (window slides) SCALE-Sim's ifmap and filter buffers make on ``spec``.

    SCALE-Sim keeps every prefetch in a trace it grows by concatenation, so its memory grows
    with this count and its run time with its square: a guard before running it.

    Args:
        spec: The convolution with its SRAM sizes and bandwidths in elements.
        profile: The hardware profile.

    Returns:
        The number of prefetches after the initial fill (0 with ideal bandwidth).
    """
    if profile.dram.mode == "calc":
        return 0
    fold = folding(spec, profile)
    if profile.dataflow == "os":
        ifmap, filters = read_buffers(spec, fold, profile)
        return ifmap.misses(fold.col_folds) + filters.misses(fold.row_folds)
    return sum(count for _line, _side, count in _read_events(spec, fold, profile)[0])


def _serve(clock: int, served: int, request: int, count: int) -> tuple[int, int]:
    """``count`` slides in one line: each sets ``lpc += request`` and ``out = lpc + max(0, lpc - out)``.

    The lead ``out - lpc`` after the first slide is ``e = max(0, lpc - out)``; each further slide
    makes it ``max(0, request - e)``, so it alternates and ``count`` slides cost O(1).
    """
    clock += request
    lead = max(0, clock - served)
    if count > 1:
        second = max(0, request - lead)
        lead = second if count % 2 == 0 else max(0, request - second)
        clock += (count - 1) * request
    return clock, clock + lead


def _bandwidth_bound(spec: SimSpec, fold: Folding, ifmap: ReadBuffer, filters: ReadBuffer,
                     profile: Profile) -> int:
    """OS: the slower interface's prefetch time beyond the compute cycles."""
    memory = max(ifmap.misses(fold.col_folds) * ifmap.request, filters.misses(fold.row_folds) * filters.request,
                 math.ceil(fold.spatial_rows * fold.spatial_cols / spec.ofmap_bw))
    return max(0, memory - fold.folds * fold.fold_lines)
