"""AMED's Metropolis-Hastings search over ordered discrete parameters, as an Optuna sampler."""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from typing import Any, Callable, Sequence

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from brevitas_amed import _mh
from brevitas_amed._mh_state import (
    ChainRecord,
    ChainSpace,
    EnergyTable,
    Pending,
    newest_record,
    write_record,
)

Scalarization = Callable[[Sequence[float]], float]


@dataclasses.dataclass(frozen=True)
class GeometricAnnealing:
    """Temperature falling geometrically from ``initial`` to ``final`` over ``n_trials`` trials.

    ``T(n) = initial * (final / initial) ** (n / n_trials)`` for trial number ``n``, and
    ``final`` from trial ``n_trials`` on.

    Args:
        initial: Temperature of trial 0, in units of the score the chain maximises.
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


class AMEDSampler(BaseSampler):
    """Metropolis-Hastings over ordered discrete parameters (AMED).

    The chain's coordinates are the parameters every finished trial shares that are categorical
    (choices in the order given), integer, or float with a ``step``. A proposal moves a few of
    them to a neighbouring value; the acceptance test is Metropolis-Hastings, with the Hastings
    correction for the fewer neighbours at the grid's borders, at a temperature that follows an
    annealing schedule. Other parameters come from ``independent_sampler``.

    The chain works on the energy ``-score``, where ``score`` is the scalarised trial values to
    be maximised. States whose energy is known from finished trials are moved through inside the
    sampler, many moves per trial; a trial is spent only on a state nobody evaluated yet. Its
    result is accepted or rejected when the next trial is sampled. Failed and pruned trials are
    rejected moves with infinite energy.

    The chain starts at the first finished trial with a finite score: enqueue one (for example
    uniform 8-bit) to choose the start; otherwise the first trial comes from
    ``independent_sampler``. Trials the chain did not propose (enqueued, added, or run by another
    sampler) are offered to the chain as Metropolis proposals when they finish.

    The chain's state is stored with each trial it samples (trial system attrs), so the sampler
    object holds only caches: several workers or processes on one storage, and a new process
    after a crash, continue the same chain. With parallel workers the chain may briefly fork; the
    newest record wins and no finished evaluation is lost, since its energy stays available to
    later moves.

    Example:

        .. code-block:: python

            import optuna
            from brevitas_amed import AMEDSampler, QualityScore

            sampler = AMEDSampler(
                seed=0,
                scalarization=QualityScore(beta=0.5, reference_latency=1e6,
                                           accuracy_threshold=0.70),
            )
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
            study.enqueue_trial({f"w:{name}": 8 for name in layer_names})
            study.optimize(objective, n_trials=300)

    Args:
        scalarization:
            How trial values become the score the chain maximises. ``None``: the single
            objective's value, negated for a ``minimize`` study (multi-objective studies need
            one of the other forms). A sequence of non-negative weights, one per objective:
            ``score = sum(w_i * v_i)`` with ``v_i`` negated for ``minimize`` objectives. A
            callable: ``score = scalarization(values)`` with ``values`` in the study's objective
            order and higher meaning better, for example a
            :class:`~brevitas_amed.QualityScore`.
        temperature:
            Temperature in units of the score: a positive float for a constant temperature, or a
            callable from the trial number to a positive temperature. The default
            :class:`GeometricAnnealing` (0.002 down to 0.0001 over 300 trials) suits scores
            that are accuracies in ``[0, 1]`` or :class:`~brevitas_amed.QualityScore`, where a
            tenth of an accuracy point is a step worth weighing; scale it with your score.
        max_coordinates:
            Largest number of parameters one proposal moves; each proposal moves between one
            and this many, uniformly.
        constraint:
            Optional cheap feasibility test ``constraint(params) -> bool`` on the chain's
            parameters (for example a model-size limit). Proposals it rejects count as rejected
            moves and cost no trial.
        restart_after:
            If given, after this many consecutive rejected evaluated proposals the chain
            restarts from the best state known.
        max_moves_per_trial:
            Most moves made through known states while looking for a state to evaluate. When
            every proposal lands on a known state, the trial evaluates the last one again.
        independent_sampler:
            Sampler for the parameters outside the chain and for trials before the chain
            starts. Defaults to :class:`~optuna.samplers.RandomSampler` with ``seed``.
        seed:
            Seed for the chain's random numbers and the default independent sampler.

    Raises:
        ValueError: If an argument is out of range or of the wrong kind.
    """

    def __init__(
        self,
        *,
        scalarization: Sequence[float] | Scalarization | None = None,
        temperature: float | Callable[[int], float] | None = None,
        max_coordinates: int = 2,
        constraint: Callable[[dict[str, Any]], bool] | None = None,
        restart_after: int | None = None,
        max_moves_per_trial: int = 1000,
        independent_sampler: BaseSampler | None = None,
        seed: int | None = None,
    ) -> None:
        self._scalarization = _check_scalarization(scalarization)
        self._temperature = _check_temperature(temperature)
        _check_positive_int("max_coordinates", max_coordinates)
        _check_positive_int("max_moves_per_trial", max_moves_per_trial)
        if restart_after is not None:
            _check_positive_int("restart_after", restart_after)
        if constraint is not None and not callable(constraint):
            raise ValueError(f"`constraint` must be callable or None, got {constraint!r}.")
        self._max_coordinates = max_coordinates
        self._constraint = constraint
        self._restart_after = restart_after
        self._max_moves = max_moves_per_trial
        self._independent_sampler = independent_sampler or RandomSampler(seed=seed)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._search_spaces: dict[tuple[int, int], IntersectionSearchSpace] = {}
        self._tables: dict[tuple[int, int], EnergyTable] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Caches and the lock are rebuilt; the chain itself lives in the study's storage.
        state = self.__dict__.copy()
        for name in ("_lock", "_search_spaces", "_tables"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._search_spaces = {}
        self._tables = {}

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._independent_sampler.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        key = (id(study._storage), study._study_id)
        with self._lock:
            calculator = self._search_spaces.setdefault(key, IntersectionSearchSpace(True))
            space = calculator.calculate(study)
        return {n: d for n, d in space.items() if _mh.is_ordered_discrete(d)}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space or "fixed_params" in trial.system_attrs:
            return {}
        space = ChainSpace(search_space)
        with self._lock:
            trials = study._get_trials(deepcopy=False)
            table = self._table(study, space)
            table.update(trials)
            record = self._load_or_start(trials, trial.number, table)
            if record is None:
                return {}
            temperature = self._temperature_at(trial.number)
            self._take_in_finished(record, table, temperature)
            self._maybe_restart(record, table)
            proposal, log_hastings = self._walk(record, table, temperature)
            record.pending.append(
                Pending(
                    trial.number,
                    proposal,
                    log_hastings,
                    temperature,
                    _mh.draw_log_u(self._rng),
                    record.epoch,
                )
            )
            record.watermark = len(trials) - 1
            record.waiting = table.unfinished_up_to(record.watermark)
            write_record(study._storage, trial._trial_id, record)
        return space.params_of(proposal)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._independent_sampler.sample_independent(
            study, trial, param_name, param_distribution
        )

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent_sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._independent_sampler.after_trial(study, trial, state, values)

    def _table(self, study: Study, space: ChainSpace) -> EnergyTable:
        key = (id(study._storage), study._study_id)
        table = self._tables.get(key)
        if table is None or table.space.signature != space.signature:
            table = EnergyTable(space, _energy_function(self._scalarization, study.directions))
            self._tables[key] = table
        return table

    def _temperature_at(self, trial_number: int) -> float:
        temperature = float(self._temperature(trial_number))
        if not temperature > 0 or math.isinf(temperature):
            raise ValueError(
                f"`temperature` must give a positive finite temperature; it gave {temperature} "
                f"for trial {trial_number}."
            )
        return temperature

    def _load_or_start(
        self, trials: Sequence[FrozenTrial], number: int, table: EnergyTable
    ) -> ChainRecord | None:
        record = newest_record(trials, number, table.space.signature)
        if record is not None:
            return record
        start = table.first_finite()
        if start is None:
            return None
        start_number, state, energy = start
        # The start trial is taken into account; later trials are offered to the chain.
        return ChainRecord(
            table.space.signature,
            state,
            energy,
            watermark=start_number,
            waiting=table.unfinished_up_to(start_number),
        )

    def _take_in_finished(
        self, record: ChainRecord, table: EnergyTable, temperature: float
    ) -> None:
        pending = {p.trial: p for p in record.pending}
        for number in table.finished_since(record):
            state = table.trial_states[number]
            proposal = pending.pop(number, None)
            if state is None:
                continue
            energy = table.energy(state)
            assert energy is not None
            if proposal is None:
                # A trial the chain did not propose: a symmetric proposal from the current state.
                self._decide(record, state, energy, 0.0, temperature, _mh.draw_log_u(self._rng))
            elif proposal.epoch == record.epoch:
                moved = self._decide(
                    record,
                    state,
                    energy,
                    proposal.log_hastings,
                    proposal.temperature,
                    proposal.log_u,
                )
                record.rejections_in_row = 0 if moved else record.rejections_in_row + 1
        record.pending = list(pending.values())

    def _decide(
        self,
        record: ChainRecord,
        state: _mh.State,
        energy: float,
        log_hastings: float,
        temperature: float,
        log_u: float,
    ) -> bool:
        """Make one Metropolis-Hastings decision; return whether the current state changed."""
        record.moves += 1
        if not _mh.accepts(record.energy, energy, log_hastings, temperature, log_u):
            return False
        record.accepted += 1
        if state == record.state:
            return False
        record.move_to(state, energy)
        return True

    def _maybe_restart(self, record: ChainRecord, table: EnergyTable) -> None:
        if self._restart_after is None or record.rejections_in_row < self._restart_after:
            return
        record.rejections_in_row = 0
        best = table.best()
        if best is not None and best[0] != record.state:
            record.restarts += 1
            record.move_to(*best)

    def _walk(
        self, record: ChainRecord, table: EnergyTable, temperature: float
    ) -> tuple[_mh.State, float]:
        """Move through known states until a proposal lands on an unevaluated one."""
        sizes = table.space.sizes
        # States other workers are evaluating from this state; re-proposing them wastes a trial.
        running = {p.proposal for p in record.pending if p.epoch == record.epoch}
        fallback: tuple[_mh.State, float] = (record.state, 0.0)
        for _ in range(self._max_moves):
            proposal, log_hastings = _mh.propose(
                record.state, sizes, self._max_coordinates, self._rng
            )
            if proposal in running:
                continue
            if self._constraint is not None and not self._constraint(
                table.space.params_of(proposal)
            ):
                record.moves += 1
                record.constraint_rejections += 1
                continue
            energy = table.energy(proposal)
            if energy is None:
                return proposal, log_hastings
            fallback = (proposal, log_hastings)
            self._decide(
                record, proposal, energy, log_hastings, temperature, _mh.draw_log_u(self._rng)
            )
        return fallback


def _energy_function(
    scalarization: Sequence[float] | Scalarization | None,
    directions: Sequence[StudyDirection],
) -> Callable[[Sequence[float]], float]:
    signs = [1.0 if d == StudyDirection.MAXIMIZE else -1.0 for d in directions]
    if scalarization is None:
        if len(signs) > 1:
            raise ValueError(
                "AMEDSampler needs `scalarization` (weights or a callable such as "
                f"QualityScore) for a study with {len(signs)} objectives."
            )
        return lambda values: -signs[0] * values[0]
    if callable(scalarization):
        return lambda values: -float(scalarization(values))
    if len(scalarization) != len(signs):
        raise ValueError(
            f"`scalarization` has {len(scalarization)} weights but the study has "
            f"{len(signs)} objectives."
        )
    weights = [w * s for w, s in zip(scalarization, signs)]
    return lambda values: -sum(w * v for w, v in zip(weights, values))


def _check_scalarization(
    scalarization: Sequence[float] | Scalarization | None,
) -> Sequence[float] | Scalarization | None:
    if scalarization is None or callable(scalarization):
        return scalarization
    try:
        weights = tuple(float(w) for w in scalarization)
    except (TypeError, ValueError):
        raise ValueError(
            "`scalarization` must be None, a sequence of non-negative weights or a callable, "
            f"got {scalarization!r}."
        ) from None
    if not weights or any(not (w >= 0) or math.isinf(w) for w in weights):
        raise ValueError(
            f"`scalarization` weights must be finite and non-negative, got {weights}."
        )
    return weights


def _check_temperature(
    temperature: float | Callable[[int], float] | None,
) -> Callable[[int], float]:
    if temperature is None:
        return GeometricAnnealing()
    if callable(temperature):
        return temperature
    if isinstance(temperature, (int, float)) and 0 < temperature < math.inf:
        return GeometricAnnealing(float(temperature), float(temperature), 1)
    raise ValueError(
        "`temperature` must be a positive finite float or a callable from trial number to "
        f"temperature, got {temperature!r}."
    )


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
