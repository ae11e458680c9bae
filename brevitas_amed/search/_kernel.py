"""Metropolis-Hastings moves on integer index grids and unit intervals.

A state's coordinate ``i`` is either a grid index in ``0 .. sizes[i]-1`` (``sizes[i] >= 2``),
whose neighbours are the indices one step below and above it, or, where ``sizes[i]`` is
:data:`CONTINUOUS`, a float in ``[0, 1]`` moved by a Gaussian random walk reflected at the ends.
This module knows nothing of Optuna: :mod:`brevitas_amed.search._space` maps parameters to and
from these coordinates.
"""

from __future__ import annotations

import math
import random
from typing import Sequence, Union

State = tuple[Union[int, float], ...]
CONTINUOUS = 0
"""``sizes[i]`` of a continuous coordinate."""
TARGET_ACCEPTANCE = 0.44
"""Acceptance rate the scale of each continuous coordinate is adapted towards: the optimum of a
one-dimensional random-walk Metropolis (Roberts and Rosenthal, 2001)."""
INITIAL_SCALE = 0.1
MIN_SCALE, MAX_SCALE = 1e-6, 1.0


def propose(
    state: State,
    sizes: Sequence[int],
    scales: Sequence[float],
    max_coordinates: int,
    rng: random.Random,
) -> tuple[State, float]:
    """Draw a move from ``state`` and the log Hastings ratio of the move.

    The proposal picks ``m`` uniformly in ``1 .. min(max_coordinates, len(state))``, then ``m``
    distinct coordinates uniformly. A grid coordinate moves one index down or up with equal
    probability (only one way at a border). A continuous one moves by ``N(0, scales[i] ** 2)``,
    reflected back into ``[0, 1]``; the reflected walk is symmetric, ``q(x -> y) = q(y -> x)``.
    Every chosen coordinate changes (a continuous one almost surely), so the set of moved
    coordinates is recoverable from the pair of states and the reverse move has the same ``m``
    and coordinate set. The proposal is asymmetric only through the number of neighbours of each
    moved grid coordinate, which gives the Hastings ratio
    ``q(y -> x) / q(x -> y) = prod_i n_i(x) / n_i(y)``.

    Args:
        state: Current coordinates.
        sizes: Grid size of each coordinate, :data:`CONTINUOUS` for a continuous one.
        scales: Random-walk standard deviation of each coordinate (used by continuous ones).
        max_coordinates: Largest number of coordinates one proposal moves.
        rng: Random source.

    Returns:
        The proposed state and ``log(q(y -> x) / q(x -> y))``.
    """
    n_moved = rng.randint(1, min(max_coordinates, len(state)))
    proposal = list(state)
    log_hastings = 0.0
    for i in rng.sample(range(len(state)), n_moved):
        size = sizes[i]
        if size == CONTINUOUS:
            proposal[i] = reflect(state[i] + rng.gauss(0.0, scales[i]))
            continue
        index = int(state[i])
        if index == 0:
            proposal[i] = 1
        elif index == size - 1:
            proposal[i] = index - 1
        else:
            proposal[i] = index + (1 if rng.random() < 0.5 else -1)
        log_hastings += math.log(_n_neighbours(index, size)) - math.log(
            _n_neighbours(int(proposal[i]), size)
        )
    return tuple(proposal), log_hastings


def reflect(value: float) -> float:
    """Fold a real number into ``[0, 1]`` by reflection at both ends."""
    folded = math.fmod(abs(value), 2.0)
    return 2.0 - folded if folded > 1.0 else folded


def _n_neighbours(index: int, size: int) -> int:
    return 1 if index == 0 or index == size - 1 else 2


def accepts(
    energy_current: float,
    energy_proposed: float,
    log_hastings: float,
    temperature: float,
    log_u: float,
) -> bool:
    """Metropolis-Hastings acceptance test ``log u < -(E' - E) / T + log_hastings``.

    Infinite energies are handled without NaN: a move to an infinite energy is rejected, a move
    from an infinite to a finite energy is accepted.

    Args:
        energy_current: Energy of the current state (lower is better).
        energy_proposed: Energy of the proposed state.
        log_hastings: ``log(q(y -> x) / q(x -> y))`` from :func:`propose`.
        temperature: Positive temperature in energy units.
        log_u: Log of a uniform draw in ``(0, 1)``.

    Returns:
        Whether the chain moves to the proposed state.
    """
    if math.isinf(energy_proposed):
        return False
    if math.isinf(energy_current):
        return True
    return log_u < -(energy_proposed - energy_current) / temperature + log_hastings


def draw_log_u(rng: random.Random) -> float:
    """Log of a uniform draw in ``(0, 1]``, never ``-inf``."""
    return math.log(1.0 - rng.random())


def adapt_scale(scale: float, accepted: bool, step: int) -> float:
    """One Robbins-Monro step of a continuous coordinate's scale towards the target rate.

    ``log s += (accepted - TARGET_ACCEPTANCE) / sqrt(step + 1)``, kept in
    ``[MIN_SCALE, MAX_SCALE]``. The chain applies it only during its burn-in, so the moves after
    it form a Markov chain with fixed proposals.

    Args:
        scale: Current standard deviation.
        accepted: Whether the proposal that moved this coordinate was accepted.
        step: Number of adaptation steps taken before this one.

    Returns:
        The new standard deviation.
    """
    log_scale = math.log(scale) + (float(accepted) - TARGET_ACCEPTANCE) / math.sqrt(step + 1)
    return min(MAX_SCALE, max(MIN_SCALE, math.exp(log_scale)))
