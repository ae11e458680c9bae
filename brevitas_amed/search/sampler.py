"""AMED's Metropolis-Hastings search as an Optuna sampler.

:class:`AMEDSampler` adapts a private :class:`~brevitas_amed.search._chain.Chain` to Optuna's
sampler interface and persists it in the study's storage, the way Optuna's CMA-ES sampler adapts
an ask-and-tell optimizer.
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any, Callable, Sequence

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from brevitas_amed.search._chain import Chain, ChainSettings
from brevitas_amed.search._energy import EnergyTable
from brevitas_amed.search._record import write_record
from brevitas_amed.search._space import ChainSpace, is_chain_coordinate
from brevitas_amed.search.annealing import GeometricAnnealing

Scalarization = Callable[[Sequence[float]], float]


class AMEDSampler(BaseSampler):
    """Metropolis-Hastings over every kind of Optuna parameter (AMED).

    The chain's coordinates are the parameters every finished trial shares (single-valued ones
    excepted). Categorical (choices in the order given), integer and stepped float parameters
    are index grids: a move goes one step down or up, with the Hastings correction for the
    fewer neighbours at a grid's borders. Float parameters without a step move by a Gaussian
    random walk in their range scaled to ``[0, 1]`` (linearly, or in log for ``log=True``),
    reflected at the bounds, which keeps the proposal symmetric; the walk's scale adapts
    towards a 0.44 acceptance rate during the first ``adaptation_moves`` decisions on such
    moves and is fixed after them. A proposal moves between one and ``max_coordinates``
    parameters of any kinds; the chain targets ``exp(-E / T)`` relative to the uniform measure on
    each grid and on each (log-)scaled float range (a log-scaled int grid counts as uniform,
    where ``RandomSampler`` draws it log-uniformly). Other parameters come from
    ``independent_sampler``.

    The chain works on the energy ``-score``, where ``score`` is the scalarised trial values to
    be maximised. States whose energy is known from finished trials are moved through inside the
    sampler, many moves per trial; a trial is spent only on a state nobody evaluated yet (any
    move of a continuous parameter is such a state). Its result is accepted or rejected when a
    later trial is sampled. Pruned trials and non-finite values are rejected moves with
    infinite energy; a failed trial is a rejected move too, but its state may be proposed again
    until it has failed twice (a failure may be transient, such as an out-of-memory worker).
    When every move lands on a known state, the trial re-evaluates the current state, which
    refines its mean energy.

    For a noisy objective (an accuracy after a short, randomly batched adaptation), a state's
    energy is the mean of its evaluations, and ``reevaluate_after`` makes the chain spend trials
    on that mean: after that many evaluated proposals in a row were rejected, the next trial
    re-evaluates the current state (until it has ``max_evaluations``). A state accepted on one
    lucky draw then regresses to its mean instead of freezing the chain. Set the temperature
    relative to the noise of one evaluation (see :func:`~brevitas_amed.search.binomial_noise`).

    The chain starts at the best feasible state of the finished trials, and its temperature
    schedule counts trials from that first step. Trials the chain did not propose (enqueued,
    added, run by another sampler, or the history of a study that switches to this sampler) are
    known energies and candidate states for the start and for restarts, never moves.

    The chain's state is stored with each trial it samples (trial system attrs), ordered by a
    sequence number, so the sampler object holds only caches: several workers or processes on
    one storage, and a new process after a crash, continue the same chain. With parallel
    workers the chain may fork; the newest record wins, so a fork costs the moves the losing
    branch made between trials, and proposals that finish after the chain left the state they
    were proposed from count as known energies rather than moves (``stale`` in the record).

    Example:

        .. code-block:: python

            import optuna
            from brevitas_amed.search import AMEDSampler, QualityScore

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
            :class:`~brevitas_amed.search.QualityScore`.
        temperature:
            Temperature in units of the score: a positive float for a constant temperature, or a
            callable from the step (trials since the chain's first trial in the study) to a
            positive temperature. The default
            :class:`GeometricAnnealing` (0.002 down to 0.0001 over 300 trials) suits scores
            that are accuracies in ``[0, 1]`` or :class:`~brevitas_amed.search.QualityScore`, where a
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
            every proposal lands on a known state, the trial re-evaluates the current state.
        reevaluate_after:
            If given, after this many rejected evaluated proposals in a row at one state the next
            trial re-evaluates that state; ``None`` never does (a deterministic objective gains
            nothing from it).
        max_evaluations:
            Most evaluations (completed or running) of one state that ``reevaluate_after``
            asks for.
        adaptation_moves:
            Number of decisions on moves of continuous parameters during which their random-walk
            scales adapt; ``0`` keeps the initial scale (a tenth of the scaled range).
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
        adaptation_moves: int = 100,
        reevaluate_after: int | None = None,
        max_evaluations: int = 3,
        independent_sampler: BaseSampler | None = None,
        seed: int | None = None,
    ) -> None:
        self._scalarization = _check_scalarization(scalarization)
        self._temperature = _check_temperature(temperature)
        _check_positive_int("max_coordinates", max_coordinates)
        _check_positive_int("max_moves_per_trial", max_moves_per_trial)
        if isinstance(adaptation_moves, bool) or not isinstance(adaptation_moves, int) or (
            adaptation_moves < 0
        ):
            raise ValueError(f"`adaptation_moves` must be an int >= 0, got {adaptation_moves!r}.")
        if restart_after is not None:
            _check_positive_int("restart_after", restart_after)
        if reevaluate_after is not None:
            _check_positive_int("reevaluate_after", reevaluate_after)
        _check_positive_int("max_evaluations", max_evaluations)
        if constraint is not None and not callable(constraint):
            raise ValueError(f"`constraint` must be callable or None, got {constraint!r}.")
        self._settings = ChainSettings(
            max_coordinates,
            constraint,
            restart_after,
            max_moves_per_trial,
            adaptation_moves,
            reevaluate_after,
            max_evaluations,
        )
        self._independent_sampler = independent_sampler or RandomSampler(seed=seed)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._search_spaces: dict[str, IntersectionSearchSpace] = {}
        self._tables: dict[str, EnergyTable] = {}

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
        with self._lock:
            calculator = self._search_spaces.setdefault(
                study.study_name, IntersectionSearchSpace(True)
            )
            space = calculator.calculate(study)
        return {n: d for n, d in space.items() if is_chain_coordinate(d)}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        search_space = {n: d for n, d in search_space.items() if is_chain_coordinate(d)}
        if not search_space or "fixed_params" in trial.system_attrs:
            return {}
        space = ChainSpace(search_space)
        with self._lock:
            trials = study.get_trials(deepcopy=False)
            table = self._table(study, space)
            table.update(trials)
            chain = Chain.load_or_start(
                table, trial.number, len(trials), self._settings, self._rng
            )
            if chain is None:
                return {}
            chain.tell_finished()
            temperature = self._temperature_at(trial.number - chain.record.first_trial)
            state = chain.ask(trial.number, temperature, len(trials))
            write_record(study, trial, chain.record)
        return space.params_of(state)

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
        table = self._tables.get(study.study_name)
        if table is None or table.space.signature != space.signature:
            table = EnergyTable(space, _energy_function(self._scalarization, study.directions))
            self._tables[study.study_name] = table
        return table

    def _temperature_at(self, step: int) -> float:
        temperature = float(self._temperature(step))
        if not temperature > 0 or math.isinf(temperature):
            raise ValueError(
                f"`temperature` must give a positive finite temperature; it gave {temperature} "
                f"for step {step}."
            )
        return temperature


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
        "`temperature` must be a positive finite float or a callable from the chain step to "
        f"temperature, got {temperature!r}."
    )


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
