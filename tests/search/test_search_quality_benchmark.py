"""The benchmark's exact optimum and hypervolume, checked by brute force on small problems."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import search_quality  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_optimum_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = [f"l{i}" for i in range(6)]
    cycles = np.sort(rng.uniform(1e3, 1e5, (6, 5)), axis=1)
    problem = search_quality.make_problem(names, cycles, seed)
    brute = max(
        problem.quality.score(*problem.values(np.array(index)))
        for index in itertools.product(range(5), repeat=6)
    )
    assert search_quality.optimum(problem, search_quality.exact_front(problem)) == pytest.approx(
        brute, abs=1e-12
    )


def test_hypervolume_of_a_staircase() -> None:
    points = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [2.5, 2.5]])
    assert search_quality.hypervolume(points, np.array([4.0, 4.0])) == pytest.approx(6.0)
    assert search_quality.hypervolume(points, np.array([0.5, 4.0])) == 0.0
