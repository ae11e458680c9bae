"""The Metropolis-Hastings kernel on index grids, without Optuna."""

from __future__ import annotations

import math
import random

import pytest

from brevitas_amed.search import _kernel as _mh

SIZES = (3, 4)
ENERGY = {(i, j): 0.7 * (i - 1) ** 2 + 0.4 * j for i in range(3) for j in range(4)}
TEMPERATURE = 1.0
CHI2_DF11_P001 = 31.26  # 99.9% quantile of chi-square with 11 degrees of freedom


def _run_chain(n_moves: int, hastings: bool, seed: int = 0) -> dict[tuple[int, ...], int]:
    rng = random.Random(seed)
    state = (0, 0)
    counts = {s: 0 for s in ENERGY}
    for _ in range(n_moves):
        proposal, log_hastings = _mh.propose(state, SIZES, (0.0, 0.0), 2, rng)
        if _mh.accepts(
            ENERGY[state],
            ENERGY[proposal],
            log_hastings if hastings else 0.0,
            TEMPERATURE,
            _mh.draw_log_u(rng),
        ):
            state = proposal
        counts[state] += 1
    return counts


def _chi2(counts: dict[tuple[int, ...], int]) -> float:
    weights = {s: math.exp(-e / TEMPERATURE) for s, e in ENERGY.items()}
    total_weight = sum(weights.values())
    n = sum(counts.values())
    return sum(
        (counts[s] - n * w / total_weight) ** 2 / (n * w / total_weight)
        for s, w in weights.items()
    )


def test_chain_samples_boltzmann_distribution_at_grid_borders() -> None:
    # Successive states are correlated, so compare on a thinned count (every 10th move).
    counts = _run_chain(200_000, hastings=True)
    thinned = {s: c / 10 for s, c in counts.items()}
    assert _chi2(thinned) < CHI2_DF11_P001


def test_chain_without_hastings_correction_is_detectably_wrong() -> None:
    counts = _run_chain(200_000, hastings=False)
    thinned = {s: c / 10 for s, c in counts.items()}
    assert _chi2(thinned) > 10 * CHI2_DF11_P001


def test_propose_moves_one_to_max_coordinates_by_one_step() -> None:
    rng = random.Random(1)
    state = (0, 2, 4, 1)
    sizes = (5, 5, 5, 2)
    moved_counts = set()
    for _ in range(500):
        proposal, _ = _mh.propose(state, sizes, (0.0,) * 4, 3, rng)
        diffs = [abs(a - b) for a, b in zip(state, proposal)]
        assert set(diffs) <= {0, 1}
        assert all(0 <= p < n for p, n in zip(proposal, sizes))
        moved_counts.add(sum(diffs))
    assert moved_counts == {1, 2, 3}


@pytest.mark.parametrize(
    "state, sizes, expected",
    [
        ((0,), (3,), math.log(1) - math.log(2)),  # border to interior
        ((1,), (3,), None),  # interior to border: log 2, interior to interior impossible here
        ((0,), (2,), 0.0),  # both states are borders
        ((2,), (5,), 0.0),  # interior to interior
    ],
)
def test_log_hastings_counts_neighbours(
    state: tuple[int, ...], sizes: tuple[int, ...], expected: float | None
) -> None:
    proposal, log_hastings = _mh.propose(state, sizes, (0.0,), 1, random.Random(0))
    if expected is None:
        assert proposal in ((0,), (2,))
        expected = math.log(2)
    assert log_hastings == pytest.approx(expected)


def test_accepts_handles_infinite_energies() -> None:
    assert not _mh.accepts(0.0, math.inf, 0.0, 1.0, -10.0)
    assert _mh.accepts(math.inf, 5.0, 0.0, 1.0, -0.0)
    assert _mh.accepts(1.0, 0.5, 0.0, 1.0, -1e-9)
    assert not _mh.accepts(0.0, 1.0, 0.0, 0.1, math.log(0.5))
