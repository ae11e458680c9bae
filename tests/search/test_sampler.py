"""AMEDSampler in Optuna studies: chain behaviour, objectives, failures and arguments."""

from __future__ import annotations

import functools
import itertools
import math

import optuna
import pytest
from optuna.trial import TrialState

from brevitas_amed.search import AMEDSampler, GeometricAnnealing, QualityScore
from brevitas_amed.search._record import read_record

optuna.logging.set_verbosity(optuna.logging.WARNING)

BITS = [2, 3, 4, 6, 8]
LAYERS = [f"w:layer{i}" for i in range(8)]
# Accuracy lost by layer i at each width, and its share of the latency at each width.
SENSITIVITY = [0.05, 0.01, 0.02, 0.004, 0.03, 0.008, 0.015, 0.06]
LATENCY_SHARE = [0.1, 0.2, 0.15, 0.1, 0.1, 0.15, 0.1, 0.1]


def _accuracy_latency(params: dict[str, int]) -> tuple[float, float]:
    accuracy = 0.9 - sum(s * 4.0 ** (2 - params[n]) for n, s in zip(LAYERS, SENSITIVITY))
    latency = sum(w * params[n] ** 2 / 64 for n, w in zip(LAYERS, LATENCY_SHARE)) * 1e6
    return accuracy, latency


QUALITY = QualityScore(beta=0.1, reference_latency=1e6, accuracy_threshold=0.87)


def _pareto_objective(trial: optuna.Trial) -> tuple[float, float]:
    return _accuracy_latency({n: trial.suggest_categorical(n, BITS) for n in LAYERS})


def _quality_objective(trial: optuna.Trial) -> float:
    return QUALITY(_pareto_objective(trial))


@functools.lru_cache(maxsize=None)
def _best_quality() -> float:
    # The layers are coupled only through the threshold; 5**8 states are few enough to scan.
    return max(
        QUALITY(_accuracy_latency(dict(zip(LAYERS, bits))))
        for bits in itertools.product(BITS, repeat=len(LAYERS))
    )


def _records(study: optuna.Study):
    return [r for r in (read_record(t) for t in study.trials) if r is not None]


def _params_sequence(seed: int) -> list[dict]:
    study = optuna.create_study(direction="maximize", sampler=AMEDSampler(seed=seed))
    study.enqueue_trial({n: 8 for n in LAYERS})
    study.optimize(_quality_objective, n_trials=40)
    return [t.params for t in study.trials]


def test_same_seed_reproduces_trials_and_other_seed_does_not() -> None:
    assert _params_sequence(3) == _params_sequence(3)
    assert _params_sequence(3) != _params_sequence(4)


def test_chain_starts_at_enqueued_trial_and_moves_to_neighbours() -> None:
    study = optuna.create_study(
        direction="maximize", sampler=AMEDSampler(seed=0, max_coordinates=2)
    )
    study.enqueue_trial({n: 8 for n in LAYERS})
    study.optimize(_quality_objective, n_trials=2)
    first, second = study.trials
    assert read_record(second).state == tuple(BITS.index(8) for _ in LAYERS)
    changed = [n for n in LAYERS if second.params[n] != 8]
    assert 1 <= len(changed) <= 2
    assert all(second.params[n] == 6 for n in changed)


def test_pipeline_study_reaches_quality_optimum() -> None:
    sampler = AMEDSampler(seed=0, scalarization=QUALITY)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.enqueue_trial({n: 8 for n in LAYERS})
    study.optimize(_pareto_objective, n_trials=200)
    best = max(QUALITY(t.values) for t in study.trials)
    start = QUALITY(study.trials[0].values)
    # Within 1% of the improvement over uniform 8-bit that the optimum offers.
    assert _best_quality() - best < 0.01 * (_best_quality() - start)
    assert study.best_trials  # the study keeps its Pareto front
    assert _records(study)[-1].energy == pytest.approx(-best, abs=0.01)


def test_chain_beats_random_search_at_equal_budget() -> None:
    def best_after(sampler: optuna.samplers.BaseSampler) -> float:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.enqueue_trial({n: 8 for n in LAYERS})
        study.optimize(_quality_objective, n_trials=100)
        return study.best_value

    optimum = _best_quality()
    amed = [best_after(AMEDSampler(seed=s)) for s in range(3)]
    random = [best_after(optuna.samplers.RandomSampler(seed=s)) for s in range(3)]
    assert sum(optimum - a for a in amed) < 0.5 * sum(optimum - r for r in random)


def test_chain_states_follow_boltzmann_distribution_in_a_study() -> None:
    # A 3 x 4 grid at a fixed temperature: once every state is known, the chain moves through
    # the energy cache between trials; the state stored with each trial is a sample of it.
    energy = {(i, j): 0.7 * (i - 1) ** 2 + 0.4 * j for i in range(3) for j in range(4)}

    def objective(trial: optuna.Trial) -> float:
        return energy[trial.suggest_int("i", 0, 2), trial.suggest_int("j", 0, 3)]

    sampler = AMEDSampler(seed=0, temperature=1.0, max_moves_per_trial=50)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=500)
    states = [r.state for r in _records(study)[100:]]
    weights = {s: math.exp(-e) for s, e in energy.items()}
    total = sum(weights.values())
    chi2 = sum(
        (states.count(s) - len(states) * w / total) ** 2 / (len(states) * w / total)
        for s, w in weights.items()
    )
    assert chi2 < 31.26  # 99.9% quantile of chi-square with 11 degrees of freedom


def test_acceptance_rate_falls_with_temperature() -> None:
    def objective(trial: optuna.Trial) -> float:
        return sum(0.01 * (trial.suggest_int(f"x{i}", 0, 9) - 3) ** 2 for i in range(6))

    def acceptance(temperature: float) -> float:
        study = optuna.create_study(sampler=AMEDSampler(seed=1, temperature=temperature))
        study.enqueue_trial({f"x{i}": 9 for i in range(6)})
        study.optimize(objective, n_trials=80)
        record = _records(study)[-1]
        return record.accepted / record.moves

    rates = [acceptance(t) for t in (1.0, 0.03, 0.001)]
    assert rates[0] > 0.7
    assert rates[0] > rates[1] > rates[2]
    assert rates[2] < 0.5


def test_weights_scalarization_respects_directions() -> None:
    # maximize -(x - 2)^2 and minimize (y - 1)^2: with equal weights the best state is (2, 1).
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_int("x", 0, 4)
        y = trial.suggest_int("y", 0, 4)
        return -((x - 2) ** 2), (y - 1) ** 2

    sampler = AMEDSampler(seed=0, scalarization=[1.0, 1.0], temperature=0.05)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.enqueue_trial({"x": 4, "y": 4})
    study.optimize(objective, n_trials=30)
    assert _records(study)[-1].state == (2, 1)


def test_every_parameter_kind_is_a_chain_coordinate() -> None:
    seen_lr = []

    def objective(trial: optuna.Trial) -> float:
        units = trial.suggest_int("units", 16, 128, step=16)
        dropout = trial.suggest_float("dropout", 0.0, 0.5, step=0.1)
        act = trial.suggest_categorical("act", ["relu", "gelu", "silu"])
        seen_lr.append(trial.suggest_float("lr", 1e-4, 1e-1, log=True))
        lr_term = abs(math.log10(seen_lr[-1]) + 2.0)
        return abs(units - 64) / 64 + abs(dropout - 0.2) + (act != "gelu") + lr_term

    sampler = AMEDSampler(seed=0, temperature=0.01)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=150)
    space = sampler.infer_relative_search_space(study, study.trials[-1])
    assert sorted(space) == ["act", "dropout", "lr", "units"]
    # The chain moves lr too, and never spends a trial on a state already evaluated.
    assert len(set(seen_lr)) > 30
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == len(params)
    assert study.best_value < 0.1
    record = _records(study)[-1]
    assert record.adapted > 0 and record.scales[0] != 0.1  # the lr step adapted


def test_failed_and_pruned_trials_are_rejected_moves() -> None:
    def objective(trial: optuna.Trial) -> float:
        params = {n: trial.suggest_categorical(n, BITS) for n in LAYERS}
        if params[LAYERS[0]] == 6:
            raise optuna.TrialPruned()
        if params[LAYERS[1]] == 6:
            raise RuntimeError("simulated crash")
        return QUALITY(_accuracy_latency(params))

    study = optuna.create_study(direction="maximize", sampler=AMEDSampler(seed=0))
    study.enqueue_trial({n: 8 for n in LAYERS})
    study.optimize(objective, n_trials=120, catch=(RuntimeError,))
    states = {t.state for t in study.trials}
    assert {TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE} <= states
    for record in _records(study):
        assert record.state[0] != BITS.index(6) and record.state[1] != BITS.index(6)
        assert math.isfinite(record.energy)
    assert study.best_value > QUALITY(_accuracy_latency({n: 8 for n in LAYERS}))


def test_constraint_rejects_proposals_without_trials() -> None:
    weights = {n: 1000 for n in LAYERS}
    limit = QualityScore(beta=0.1, reference_latency=1e6, max_size_bits=1000 * 8 * 4)
    sampler = AMEDSampler(seed=0, scalarization=QUALITY, constraint=limit.size_constraint(weights))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.enqueue_trial({n: 4 for n in LAYERS})  # at the limit; the unconstrained optimum is over
    study.optimize(_pareto_objective, n_trials=60)
    for trial in study.trials:
        assert limit.within_size(sum(weights[n] * trial.params[n] for n in LAYERS))
    assert _records(study)[-1].constraint_rejections > 0


def test_enqueued_trial_mid_study_is_known_energy_not_a_move() -> None:
    uniform_4bit = {n: 4 for n in LAYERS}
    study = optuna.create_study(
        direction="maximize", sampler=AMEDSampler(seed=0, temperature=1e-6, restart_after=1)
    )
    study.enqueue_trial({n: 8 for n in LAYERS})
    study.optimize(_quality_objective, n_trials=5)
    study.enqueue_trial(uniform_4bit)
    study.optimize(_quality_objective, n_trials=1)
    moves_before = read_record(study.trials[4]).moves
    assert study.trials[5].params == uniform_4bit
    assert study.trials[5].value > max(t.value for t in study.trials[:5])
    assert read_record(study.trials[5]) is None
    study.optimize(_quality_objective, n_trials=3)
    records = [read_record(t) for t in study.trials[6:]]
    # The enqueued trial was no Metropolis move, but a restart may jump to it as the best state.
    assert records[0].moves <= moves_before + 1
    assert any(r.state == tuple(BITS.index(4) for _ in LAYERS) for r in records)


def test_switching_to_amed_starts_at_best_known_state_and_anneals_from_there() -> None:
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(_quality_objective, n_trials=30)
    best = max(study.trials, key=lambda t: t.value)
    schedule = GeometricAnnealing(initial=0.01, final=0.0001, n_trials=10)
    study.sampler = AMEDSampler(seed=0, temperature=schedule)
    study.optimize(_quality_objective, n_trials=1)
    record = read_record(study.trials[30])
    assert record.state == tuple(BITS.index(best.params[n]) for n in sorted(LAYERS))
    assert record.first_trial == 30
    assert record.moves == 0  # the history is knowledge, not moves
    assert record.proposal.temperature == pytest.approx(0.01)  # step 0 of the schedule


def test_chain_order_follows_records_not_trial_numbers() -> None:
    # Optuna samples lazily: trial 2 is sampled before trial 1 here.
    sampler = AMEDSampler(seed=0, temperature=1e-6)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({n: 8 for n in LAYERS})
    study.optimize(_quality_objective, n_trials=3)
    first, second = study.ask(), study.ask()
    second_value = _quality_objective(second)  # sampled first
    first_value = _quality_objective(first)
    study.tell(second, second_value)
    study.tell(first, first_value)
    study.optimize(_quality_objective, n_trials=1)
    records = {t.number: read_record(t) for t in study.trials}
    assert records[second.number].seq < records[first.number].seq
    # The next trial continued from the newest record, trial `first`, and judged both.
    latest = records[study.trials[-1].number]
    assert latest.seq == records[first.number].seq + 1
    assert latest.moves >= records[first.number].moves + 1


def test_a_state_that_failed_once_may_be_tried_again() -> None:
    failures: dict[tuple, int] = {}

    def objective(trial: optuna.Trial) -> float:
        x, y = trial.suggest_int("x", 0, 3), trial.suggest_int("y", 0, 3)
        if failures.get((x, y), 0) == 0 and (x, y) != (3, 3):
            failures[(x, y)] = 1
            raise RuntimeError("transient, like an out-of-memory worker")
        return -(x + y)

    study = optuna.create_study(direction="maximize", sampler=AMEDSampler(seed=0))
    study.enqueue_trial({"x": 3, "y": 3})
    study.optimize(objective, n_trials=80, catch=(RuntimeError,))
    completed = {(t.params["x"], t.params["y"]) for t in study.trials if t.value is not None}
    assert len(completed) > 4  # states that failed once were evaluated later
    assert study.best_value == 0


def test_current_state_energy_is_refreshed_by_re_evaluations() -> None:
    calls = {"n": 0}

    def objective(trial: optuna.Trial) -> float:
        calls["n"] += 1
        x = trial.suggest_int("x", 0, 1)
        return float(x) + (1.0 if calls["n"] > 2 else 0.0)  # the objective drifts upwards

    study = optuna.create_study(
        sampler=AMEDSampler(seed=0, temperature=1e-6, max_moves_per_trial=3)
    )
    study.enqueue_trial({"x": 0})
    study.optimize(objective, n_trials=8)
    records = _records(study)
    assert all(r.state == (0,) for r in records)
    assert records[-1].proposal.refresh  # every move lands on a known state
    # The mean of (0, 1, 1, ...) evaluations of x=0 is stored, not the first value only.
    assert records[-1].energy > 0.5


def test_n_jobs_two_completes_and_keeps_one_chain() -> None:
    sampler = AMEDSampler(seed=0, scalarization=QUALITY)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.enqueue_trial({n: 8 for n in LAYERS})
    study.optimize(_pareto_objective, n_trials=120, n_jobs=2)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    records = _records(study)
    assert len(records) >= 110
    # Under the sampler's lock the two threads never fork the chain: the newest record counts
    # every finished proposal of the chain as a move, or as stale where the other thread's
    # accepted move left its state first (how often depends on thread timing). The last two
    # were in flight; each move out of a state leaves at most one other proposal stale.
    assert len({r.seq for r in records}) == len(records)
    head = max(records, key=lambda r: r.seq)
    proposals = sum(1 for r in records if not r.proposal.refresh)
    assert head.moves + head.stale >= proposals - 2
    assert head.moves >= head.stale and head.moves > 50
    start = QUALITY(study.trials[0].values)
    assert max(QUALITY(t.values) for t in study.trials) > start + 0.5 * (_best_quality() - start)


def test_multi_objective_without_scalarization_is_an_error() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=AMEDSampler())
    with pytest.raises(ValueError, match="scalarization"):
        study.optimize(_pareto_objective, n_trials=3)


def test_weights_must_match_objectives() -> None:
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=AMEDSampler(scalarization=[1.0, 1.0, 1.0])
    )
    with pytest.raises(ValueError, match="3 weights but the study has 2 objectives"):
        study.optimize(_pareto_objective, n_trials=3)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_coordinates": 0}, "max_coordinates"),
        ({"max_moves_per_trial": 1.5}, "max_moves_per_trial"),
        ({"restart_after": -1}, "restart_after"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"scalarization": [1.0, -1.0]}, "scalarization"),
        ({"scalarization": "quality"}, "scalarization"),
        ({"constraint": 3}, "constraint"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        AMEDSampler(**kwargs)


def test_temperature_callable_must_stay_positive() -> None:
    study = optuna.create_study(sampler=AMEDSampler(temperature=lambda n: 1.0 - n))
    with pytest.raises(ValueError, match="positive finite temperature"):
        study.optimize(lambda t: t.suggest_int("x", 0, 9), n_trials=4)


def test_geometric_annealing_schedule() -> None:
    schedule = GeometricAnnealing(initial=1.0, final=0.01, n_trials=100)
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(50) == pytest.approx(0.1)
    assert schedule(100) == pytest.approx(0.01)
    assert schedule(1000) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="`final`"):
        GeometricAnnealing(initial=0.1, final=1.0)
    with pytest.raises(ValueError, match="`n_trials`"):
        GeometricAnnealing(n_trials=0)


def test_restart_jumps_to_best_state() -> None:
    # At a warm temperature the chain accepts worse states; restarts bring it back to the best.
    sampler = AMEDSampler(seed=0, temperature=0.01, restart_after=1, max_moves_per_trial=1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({n: 8 for n in LAYERS})
    study.optimize(_quality_objective, n_trials=60)
    assert _records(study)[-1].restarts > 0


def _lucky_start_study(**kwargs) -> optuna.Study:
    # The start state's first evaluation is a lucky +100; every later one is -100. Every other
    # state is worth about 1. At a near-zero temperature only re-evaluation lets the chain leave.
    start = {f"x{i}": 2 for i in range(6)}
    seen = {"start": 0}

    def objective(trial: optuna.Trial) -> float:
        params = {f"x{i}": trial.suggest_int(f"x{i}", 0, 4) for i in range(6)}
        if params == start:
            seen["start"] += 1
            return 100.0 if seen["start"] == 1 else -100.0
        return 1.0 + 0.01 * sum(params.values())

    study = optuna.create_study(
        direction="maximize", sampler=AMEDSampler(seed=0, temperature=1e-6, **kwargs)
    )
    study.enqueue_trial(start)
    study.optimize(objective, n_trials=20)
    return study


def test_lucky_draw_freezes_a_chain_that_never_re_evaluates() -> None:
    records = _records(_lucky_start_study())
    assert all(r.state == (2,) * 6 for r in records)
    assert records[-1].reevaluations == 0


def test_re_evaluation_lets_the_chain_leave_a_lucky_state() -> None:
    study = _lucky_start_study(reevaluate_after=3, max_evaluations=2)
    records = _records(study)
    start_trials = [t for t in study.trials if t.params == {f"x{i}": 2 for i in range(6)}]
    assert len(start_trials) == 2  # the enqueued trial and one re-evaluation, capped by max_evaluations
    assert start_trials[1].number == 4  # after three rejected proposals (trials 1-3)
    assert records[-1].reevaluations >= 1
    assert records[-1].state != (2,) * 6  # the mean (0) lost to the neighbours (about 1)
    assert records[-1].energy < 0


def test_re_evaluation_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="`reevaluate_after`"):
        AMEDSampler(reevaluate_after=0)
    with pytest.raises(ValueError, match="`max_evaluations`"):
        AMEDSampler(max_evaluations=0)
