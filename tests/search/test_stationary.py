"""The chain's stationary distribution on continuous and mixed spaces is exp(-E/T).

The kernel runs alone here, for enough moves to compare histograms with the exact cell
probabilities by total-variation distance. Each test has a twin with a deliberately wrong
kernel that the same bound catches, so the bound is tight enough to fail.
"""

from __future__ import annotations

import math
import random
from typing import Callable

from brevitas_amed.search import _kernel
from brevitas_amed.search._kernel import CONTINUOUS

RATE = 3.0  # continuous energy E(u) = RATE * u on [0, 1]: most mass at the lower bound
LEVELS = (0.0, 0.9, 0.3, 1.5)  # grid energies; the grid's borders need the Hastings correction
BINS = 10
TV_BOUND = 0.03


def _energy(state: tuple) -> float:
    return RATE * state[-1] + (LEVELS[state[0]] if len(state) == 2 else 0.0)


def _cell(state: tuple) -> tuple:
    return (*state[:-1], min(BINS - 1, int(state[-1] * BINS)))


def _exact(mixed: bool) -> dict[tuple, float]:
    def mass(b: int) -> float:  # integral of exp(-RATE u) over bin b
        return (math.exp(-RATE * b / BINS) - math.exp(-RATE * (b + 1) / BINS)) / RATE

    levels = range(len(LEVELS)) if mixed else [None]
    cells = {
        ((level,) if mixed else ()) + (b,): mass(b) * (math.exp(-LEVELS[level]) if mixed else 1)
        for level in levels
        for b in range(BINS)
    }
    total = sum(cells.values())
    return {c: w / total for c, w in cells.items()}


def _total_variation(counts: dict[tuple, int], exact: dict[tuple, float]) -> float:
    n = sum(counts.values())
    return 0.5 * sum(abs(counts.get(c, 0) / n - p) for c, p in exact.items())


Propose = Callable[..., tuple]


def _run(mixed: bool, propose: Propose = _kernel.propose, n_moves: int = 100_000) -> float:
    rng = random.Random(0)
    sizes = (len(LEVELS), CONTINUOUS) if mixed else (CONTINUOUS,)
    scales = (0.0, 0.4) if mixed else (0.4,)
    state: tuple = (0, 0.5) if mixed else (0.5,)
    counts: dict[tuple, int] = {}
    for _ in range(n_moves):
        proposal, log_hastings = propose(state, sizes, scales, 2, rng)
        if _kernel.accepts(_energy(state), _energy(proposal), log_hastings, 1.0, _kernel.draw_log_u(rng)):
            state = proposal
        cell = _cell(state)
        counts[cell] = counts.get(cell, 0) + 1
    return _total_variation(counts, _exact(mixed))


def _truncated_without_correction(state, sizes, scales, max_coordinates, rng):
    """Wrong: redraws a continuous step until it stays inside, ignoring the ratio of the
    truncated proposal's normalising constants at the two states."""
    proposal, log_hastings = _kernel.propose(state, sizes, scales, max_coordinates, rng)
    i = len(state) - 1
    if proposal[i] != state[i]:
        value = -1.0
        while not 0.0 <= value <= 1.0:
            value = state[i] + rng.gauss(0.0, scales[i])
        proposal = (*proposal[:i], value)
    return proposal, log_hastings


def _mixed_without_grid_correction(state, sizes, scales, max_coordinates, rng):
    """Wrong: drops the Hastings ratio of the grid coordinate's borders."""
    proposal, _ = _kernel.propose(state, sizes, scales, max_coordinates, rng)
    return proposal, 0.0


def test_continuous_chain_samples_boltzmann_density_with_reflection() -> None:
    assert _run(mixed=False) < TV_BOUND


def test_truncated_proposal_without_its_ratio_is_detectably_wrong() -> None:
    assert _run(mixed=False, propose=_truncated_without_correction) > 1.5 * TV_BOUND


def test_mixed_chain_samples_joint_boltzmann_distribution() -> None:
    assert _run(mixed=True) < TV_BOUND


def test_mixed_chain_without_grid_hastings_correction_is_detectably_wrong() -> None:
    assert _run(mixed=True, propose=_mixed_without_grid_correction) > 1.5 * TV_BOUND


def test_reflection_keeps_values_in_the_unit_interval() -> None:
    for value, expected in [(-0.25, 0.25), (1.25, 0.75), (2.5, 0.5), (-3.1, 0.9), (0.4, 0.4)]:
        assert math.isclose(_kernel.reflect(value), expected, abs_tol=1e-12)


def test_scale_adapts_towards_target_acceptance() -> None:
    scale = _kernel.INITIAL_SCALE
    assert _kernel.adapt_scale(scale, True, 0) > scale
    assert _kernel.adapt_scale(scale, False, 0) < scale
    # At the target rate the expected step is zero.
    up = math.log(_kernel.adapt_scale(scale, True, 10) / scale)
    down = math.log(_kernel.adapt_scale(scale, False, 10) / scale)
    target = _kernel.TARGET_ACCEPTANCE
    assert math.isclose(target * up + (1 - target) * down, 0.0, abs_tol=1e-12)


STUDY_BINS = 2
STUDY_TV_BOUND = 0.06


def _study_total_variation(n_trials: int) -> float:
    import optuna

    from brevitas_amed.search import AMEDSampler
    from brevitas_amed.search._record import read_record

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        level = trial.suggest_categorical("c", list(range(len(LEVELS))))
        return LEVELS[level] + RATE * trial.suggest_float("x", 0.0, 1.0)

    study = optuna.create_study(sampler=AMEDSampler(seed=0, temperature=1.0))
    study.optimize(objective, n_trials=n_trials)
    counts: dict[tuple, int] = {}
    for trial in study.trials[200:]:  # after the scale's burn-in of 100 continuous decisions
        state = read_record(trial).state
        cell = (state[0], min(STUDY_BINS - 1, int(state[1] * STUDY_BINS)))
        counts[cell] = counts.get(cell, 0) + 1
    mass = [math.exp(-RATE * b / STUDY_BINS) - math.exp(-RATE * (b + 1) / STUDY_BINS)
            for b in range(STUDY_BINS)]
    cells = {(c, b): math.exp(-LEVELS[c]) * mass[b] for c in range(len(LEVELS))
             for b in range(STUDY_BINS)}
    total = sum(cells.values())
    return _total_variation(counts, {c: w / total for c, w in cells.items()})


def test_mixed_chain_in_a_study_samples_boltzmann_distribution() -> None:
    # One trial per continuous move: fewer samples, coarser cells and a looser bound.
    assert _study_total_variation(2000) < STUDY_TV_BOUND
