"""Metropolis-Hastings moves on a grid of ordered discrete parameters.

The chain works on integer indices: coordinate ``i`` of a state takes values ``0 .. sizes[i]-1``
and its neighbours are the indices one step below and above it. This module knows nothing of
Optuna studies; :mod:`brevitas_amed.sampler` maps parameters to and from indices.
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

State = tuple[int, ...]


def is_ordered_discrete(distribution: BaseDistribution) -> bool:
    """Whether the chain can move on ``distribution``: categorical, int or stepped float.

    Single-valued distributions are excluded: there is nothing to move.
    """
    if distribution.single():
        return False
    if isinstance(distribution, FloatDistribution):
        return distribution.step is not None
    return isinstance(distribution, (CategoricalDistribution, IntDistribution))


def grid_size(distribution: BaseDistribution) -> int:
    """Number of values of an ordered discrete distribution."""
    if isinstance(distribution, CategoricalDistribution):
        return len(distribution.choices)
    return int(round((distribution.high - distribution.low) / _step(distribution))) + 1


def to_index(distribution: BaseDistribution, value: Any) -> int:
    """Grid index of an external parameter value."""
    if isinstance(distribution, CategoricalDistribution):
        return int(distribution.to_internal_repr(value))
    step = _step(distribution)
    return int(round((float(value) - distribution.low) / step))


def to_value(distribution: BaseDistribution, index: int) -> Any:
    """External parameter value at a grid index."""
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[index]
    step = _step(distribution)
    if isinstance(distribution, IntDistribution):
        return int(distribution.low + index * step)
    return min(distribution.high, distribution.low + index * step)


def _step(distribution: BaseDistribution) -> float:
    # Optuna forces step 1 on log-scaled ints, so every ordered numeric grid has a step.
    assert isinstance(distribution, (IntDistribution, FloatDistribution))
    assert distribution.step is not None
    return distribution.step


def propose(
    state: State, sizes: Sequence[int], max_coordinates: int, rng: random.Random
) -> tuple[State, float]:
    """Draw a neighbour of ``state`` and the log Hastings ratio of the move.

    The proposal picks ``m`` uniformly in ``1 .. min(max_coordinates, len(state))``, then ``m``
    distinct coordinates uniformly, then moves each one index down or up with equal probability
    (only one way at a grid border). Every coordinate in the proposal changes, so the set of
    moved coordinates is recoverable from the pair of states and the reverse move has the same
    ``m`` and coordinate set. The proposal is asymmetric only through the number of neighbours
    of each moved coordinate, which gives the Hastings ratio
    ``q(y -> x) / q(x -> y) = prod_i n_i(x) / n_i(y)``.

    Args:
        state: Current indices; every ``sizes[i]`` must be at least 2.
        sizes: Grid size of each coordinate.
        max_coordinates: Largest number of coordinates one proposal moves.
        rng: Random source.

    Returns:
        The proposed state and ``log(q(y -> x) / q(x -> y))``.
    """
    n_moved = rng.randint(1, min(max_coordinates, len(state)))
    proposal = list(state)
    log_hastings = 0.0
    for i in rng.sample(range(len(state)), n_moved):
        before = _n_neighbours(state[i], sizes[i])
        if state[i] == 0:
            proposal[i] = 1
        elif state[i] == sizes[i] - 1:
            proposal[i] = state[i] - 1
        else:
            proposal[i] = state[i] + (1 if rng.random() < 0.5 else -1)
        log_hastings += math.log(before) - math.log(_n_neighbours(proposal[i], sizes[i]))
    return tuple(proposal), log_hastings


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
