"""Temperature schedules for :class:`~brevitas_amed.search.AMEDSampler`."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class GeometricAnnealing:
    """Temperature falling geometrically from ``initial`` to ``final`` over ``n_trials`` trials.

    ``T(n) = initial * (final / initial) ** (n / n_trials)`` at chain step ``n`` (the trial's
    number counted from the sampler's first trial in the study), and ``final`` from step
    ``n_trials`` on.

    Args:
        initial: Temperature of step 0, in units of the score the chain maximises.
        final: Temperature from trial ``n_trials`` on; at most ``initial``.
        n_trials: Length of the annealing.

    Raises:
        ValueError: If a temperature is not positive, ``final > initial`` or ``n_trials < 1``.
    """

    initial: float = 0.002
    final: float = 0.0001
    n_trials: int = 300

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.final > 0):
            raise ValueError(
                f"`initial` and `final` must be positive, got {self.initial} and {self.final}."
            )
        if self.final > self.initial:
            raise ValueError(
                f"`final` ({self.final}) must not exceed `initial` ({self.initial})."
            )
        if self.n_trials < 1:
            raise ValueError(f"`n_trials` must be at least 1, got {self.n_trials}.")

    def __call__(self, trial_number: int) -> float:
        progress = min(trial_number, self.n_trials) / self.n_trials
        return self.initial * (self.final / self.initial) ** progress
