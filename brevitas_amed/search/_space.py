"""The chain's coordinates: Optuna distributions mapped to and from kernel coordinates.

Categorical, integer and stepped float distributions become index grids (categorical choices in
the order given). A float distribution without a step becomes a continuous coordinate in
``[0, 1]``: its value scaled linearly, or its logarithm for ``log=True``, so for floats the
chain's reference measure is the one Optuna's ``RandomSampler`` draws from (grids, log-scaled
int grids included, are uniform).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.trial import FrozenTrial

from brevitas_amed.search._kernel import CONTINUOUS, State


def is_chain_coordinate(distribution: BaseDistribution) -> bool:
    """Whether the chain moves on ``distribution``: any distribution with two values or more."""
    return not distribution.single()


def is_continuous(distribution: BaseDistribution) -> bool:
    """Whether ``distribution`` is a float distribution without a step."""
    return isinstance(distribution, FloatDistribution) and distribution.step is None


def grid_size(distribution: BaseDistribution) -> int:
    """Number of values of a distribution; :data:`CONTINUOUS` for a continuous one."""
    if is_continuous(distribution):
        return CONTINUOUS
    if isinstance(distribution, CategoricalDistribution):
        return len(distribution.choices)
    return int(round((distribution.high - distribution.low) / _step(distribution))) + 1


def to_coordinate(distribution: BaseDistribution, value: Any) -> int | float:
    """Kernel coordinate of an external parameter value."""
    if isinstance(distribution, CategoricalDistribution):
        return int(distribution.to_internal_repr(value))
    if is_continuous(distribution):
        low, high, scaled = _scaled_bounds(distribution, float(value))
        return min(1.0, max(0.0, (scaled - low) / (high - low)))
    return int(round((float(value) - distribution.low) / _step(distribution)))


def to_value(distribution: BaseDistribution, coordinate: int | float) -> Any:
    """External parameter value at a kernel coordinate."""
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[int(coordinate)]
    if is_continuous(distribution):
        low, high, _ = _scaled_bounds(distribution, distribution.low)
        scaled = low + float(coordinate) * (high - low)
        value = math.exp(scaled) if distribution.log else scaled
        return float(min(distribution.high, max(distribution.low, value)))
    step = _step(distribution)
    if isinstance(distribution, IntDistribution):
        return int(distribution.low + int(coordinate) * step)
    return float(min(distribution.high, distribution.low + int(coordinate) * step))


def _scaled_bounds(distribution: FloatDistribution, value: float) -> tuple[float, float, float]:
    if distribution.log:
        return math.log(distribution.low), math.log(distribution.high), math.log(value)
    return distribution.low, distribution.high, value


def _step(distribution: BaseDistribution) -> float:
    # Optuna forces step 1 on log-scaled ints, so every ordered numeric grid has a step.
    assert isinstance(distribution, (IntDistribution, FloatDistribution))
    assert distribution.step is not None
    return distribution.step


class ChainSpace:
    """The chain's coordinates, sorted by parameter name.

    Args:
        search_space: Parameter distributions, each with at least two values.
    """

    def __init__(self, search_space: Mapping[str, BaseDistribution]) -> None:
        self.names = tuple(sorted(search_space))
        self.distributions = tuple(search_space[n] for n in self.names)
        self.sizes = tuple(grid_size(d) for d in self.distributions)
        self.continuous = tuple(i for i, s in enumerate(self.sizes) if s == CONTINUOUS)
        text = json.dumps(
            [[n, distribution_to_json(d)] for n, d in zip(self.names, self.distributions)]
        )
        self.signature = hashlib.sha1(text.encode()).hexdigest()[:16]

    def state_of(self, trial: FrozenTrial) -> State | None:
        """Coordinates of a trial's parameters, ``None`` if it lacks one or used another one."""
        state = []
        for name, distribution in zip(self.names, self.distributions):
            if trial.distributions.get(name) != distribution:
                return None
            state.append(to_coordinate(distribution, trial.params[name]))
        return tuple(state)

    def params_of(self, state: State) -> dict[str, Any]:
        """External parameter values of a state."""
        return {
            name: to_value(distribution, coordinate)
            for name, distribution, coordinate in zip(self.names, self.distributions, state)
        }

    def canonical(self, state: State) -> State:
        """The state a trial given ``params_of(state)`` reads back, so that lookups match."""
        if not self.continuous:
            return state
        values = list(state)
        for i in self.continuous:
            distribution = self.distributions[i]
            values[i] = to_coordinate(distribution, to_value(distribution, state[i]))
        return tuple(values)
