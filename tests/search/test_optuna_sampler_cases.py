"""Optuna's own reusable sampler test cases, run against AMEDSampler."""

from __future__ import annotations

from typing import Callable

import optuna
import pytest
from optuna.samplers import BaseSampler
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    MultiObjectiveSamplerTestCase,
    RelativeSamplerTestCase,
)

from brevitas_amed.search import AMEDSampler, QualityScore

optuna.logging.set_verbosity(optuna.logging.WARNING)


class TestAMEDSampler(BasicSamplerTestCase, RelativeSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: AMEDSampler(seed=0)


class TestAMEDSamplerMultiObjectiveDefaults(MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: AMEDSampler(seed=0)


class TestAMEDSamplerMultiObjective(MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: AMEDSampler(
            seed=0, scalarization=QualityScore(beta=0.1, reference_latency=1.0)
        )
