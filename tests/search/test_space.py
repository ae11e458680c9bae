"""Optuna distributions mapped to and from the chain's coordinates."""

from __future__ import annotations

import math

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from brevitas_amed.search import _space
from brevitas_amed.search._kernel import CONTINUOUS


@pytest.mark.parametrize(
    "distribution, values",
    [
        (CategoricalDistribution([2, 3, 4, 6, 8]), [2, 3, 4, 6, 8]),
        (CategoricalDistribution(["low", "mid", "high"]), ["low", "mid", "high"]),
        (IntDistribution(1, 9, step=2), [1, 3, 5, 7, 9]),
        (IntDistribution(1, 4, log=True), [1, 2, 3, 4]),
        (FloatDistribution(0.0, 1.0, step=0.25), [0.0, 0.25, 0.5, 0.75, 1.0]),
    ],
)
def test_grid_maps_values_in_order(distribution, values) -> None:
    assert _space.is_chain_coordinate(distribution)
    assert _space.grid_size(distribution) == len(values)
    assert [_space.to_value(distribution, i) for i in range(len(values))] == values
    assert [_space.to_coordinate(distribution, v) for v in values] == list(range(len(values)))


@pytest.mark.parametrize(
    "distribution, value, coordinate",
    [
        (FloatDistribution(-1.0, 1.0), 0.5, 0.75),
        (FloatDistribution(1e-4, 1.0, log=True), 1e-2, 0.5),
        (FloatDistribution(1e-7, 10.0, log=True), 1e-7, 0.0),
    ],
)
def test_continuous_float_maps_to_scaled_unit_interval(distribution, value, coordinate) -> None:
    assert _space.grid_size(distribution) == CONTINUOUS
    assert _space.to_coordinate(distribution, value) == pytest.approx(coordinate)
    assert _space.to_value(distribution, coordinate) == pytest.approx(value, rel=1e-12)
    for u in (0.0, 1.0, 0.123456789):
        x = _space.to_value(distribution, u)
        assert isinstance(x, float) and distribution.low <= x <= distribution.high


def test_canonical_state_is_what_a_trial_reads_back() -> None:
    space = _space.ChainSpace(
        {"lr": FloatDistribution(1e-5, 1e-1, log=True), "bits": CategoricalDistribution([2, 4])}
    )
    state = (1, 0.3141592653589793)
    canonical = space.canonical(state)
    params = space.params_of(canonical)
    assert space.canonical(canonical) == canonical
    assert canonical[1] == _space.to_coordinate(space.distributions[1], params["lr"])
    assert math.isclose(canonical[1], state[1], rel_tol=1e-12)


@pytest.mark.parametrize("distribution", [IntDistribution(3, 3), FloatDistribution(1.0, 1.0)])
def test_single_value_parameters_are_not_chain_coordinates(distribution) -> None:
    assert not _space.is_chain_coordinate(distribution)
