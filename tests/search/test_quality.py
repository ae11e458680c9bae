"""QualityScore and ModelSizeLimit."""

from __future__ import annotations

import math

import optuna
import pytest

from brevitas_amed.search import ModelSizeLimit, QualityScore


def test_score_trades_accuracy_against_normalised_latency() -> None:
    quality = QualityScore(beta=0.2, reference_latency=1000.0)
    assert quality.score(0.75, 1000.0) == pytest.approx(0.75 - 0.2)
    assert quality.score(0.75, 250.0) == pytest.approx(0.75 - 0.05)
    assert quality((0.75, 250.0)) == quality.score(0.75, 250.0)


def test_penalty_applies_only_below_threshold_and_grows_with_shortfall() -> None:
    quality = QualityScore(beta=0.0, reference_latency=1.0, accuracy_threshold=0.7, penalty=10.0)
    assert quality.score(0.72, 1.0) == pytest.approx(0.72)
    assert quality.score(0.70, 1.0) == pytest.approx(0.70)
    assert quality.score(0.68, 1.0) == pytest.approx(0.68 - 10 * 0.02)
    assert quality.score(0.60, 1.0) == pytest.approx(0.60 - 10 * 0.10)


def test_penalty_power_makes_penalty_steeper() -> None:
    quality = QualityScore(
        beta=0.0, reference_latency=1.0, accuracy_threshold=0.7, penalty=100.0, penalty_power=2.0
    )
    assert quality.score(0.69, 1.0) == pytest.approx(0.69 - 100 * 0.01**2)
    assert quality.score(0.60, 1.0) == pytest.approx(0.60 - 100 * 0.1**2)


def test_exact_penalty_keeps_optimum_at_threshold() -> None:
    # Each point of accuracy below the threshold costs more than any latency it could buy.
    quality = QualityScore(beta=0.5, reference_latency=1.0, accuracy_threshold=0.7, penalty=10.0)
    at_threshold = quality.score(0.70, 0.6)
    under = quality.score(0.65, 0.0)  # all latency removed, 5 points short
    assert at_threshold > under


def test_nan_accuracy_gives_nan() -> None:
    quality = QualityScore(beta=0.1, reference_latency=1.0, accuracy_threshold=0.5)
    assert math.isnan(quality.score(float("nan"), 1.0))


def test_call_needs_two_values() -> None:
    with pytest.raises(ValueError, match="got 3 values"):
        QualityScore(beta=0.1, reference_latency=1.0)((0.7, 1.0, 2.0))


def test_check_size_prunes_over_the_limit() -> None:
    quality = QualityScore(beta=0.1, reference_latency=1.0, max_size_bits=8e6)
    quality.check_size(8e6)
    with pytest.raises(optuna.TrialPruned, match="exceeds the limit"):
        quality.check_size(8e6 + 1)
    QualityScore(beta=0.1, reference_latency=1.0).check_size(1e12)  # no limit


def test_size_constraint_counts_bits_per_parameter() -> None:
    quality = QualityScore(beta=0.1, reference_latency=1.0, max_size_bits=10 * 4 + 20 * 8)
    limit = quality.size_constraint({"w:a": 10, "w:b": 20})
    assert limit({"w:a": 4, "w:b": 8, "a:x": 8})
    assert not limit({"w:a": 6, "w:b": 8})
    assert limit.size_bits({"w:a": 2, "w:b": 2}) == 60
    with pytest.raises(KeyError, match="w:b"):
        limit({"w:a": 4})
    with pytest.raises(ValueError, match="max_size_bits"):
        QualityScore(beta=0.1, reference_latency=1.0).size_constraint({"w:a": 1})


def test_size_limit_with_pruning_in_a_study() -> None:
    quality = QualityScore(beta=0.1, reference_latency=64.0, max_size_bits=5 * 6)
    evaluated = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        bits = [trial.suggest_categorical(f"w:{i}", [2, 4, 6, 8]) for i in range(5)]
        quality.check_size(sum(bits))
        evaluated.append(bits)
        return 1.0 - sum(4.0 ** (2 - b) for b in bits) / 5, float(sum(b * b for b in bits))

    from brevitas_amed.search import AMEDSampler

    study = optuna.create_study(
        directions=["maximize", "minimize"],
        sampler=AMEDSampler(seed=0, scalarization=quality, temperature=0.01),
    )
    study.enqueue_trial({f"w:{i}": 8 for i in range(5)})
    study.optimize(objective, n_trials=40)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert all(sum(bits) <= 30 for bits in evaluated)
    assert len(evaluated) > 10


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"beta": -0.1}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"reference_latency": 0.0}, "reference_latency"),
        ({"reference_latency": "fast"}, "reference_latency"),
        ({"penalty": -1.0}, "penalty"),
        ({"penalty_power": 0.5}, "penalty_power"),
        ({"accuracy_threshold": float("inf")}, "accuracy_threshold"),
        ({"max_size_bits": 0}, "max_size_bits"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    arguments = {"beta": 0.1, "reference_latency": 1.0, **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`"):
        QualityScore(**arguments)


def test_model_size_limit_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="weight_counts"):
        ModelSizeLimit({}, 10.0)
    with pytest.raises(ValueError, match="weight_counts"):
        ModelSizeLimit({"w:a": -1}, 10.0)


def test_size_limit_counts_the_weights_no_parameter_moves() -> None:
    limit = QualityScore(beta=0.1, reference_latency=1.0, max_size_bits=100).size_constraint({"w:a": 10}, offset_bits=30)
    assert limit({"w:a": 7}) and not limit({"w:a": 8})
    assert limit.size_bits({"w:a": 7}) == 100.0
    with pytest.raises(KeyError, match="count the others in offset_bits"):
        limit({"w:b": 2})


def test_binomial_noise_is_the_standard_error_of_an_accuracy() -> None:
    from brevitas_amed.search import binomial_noise

    assert binomial_noise(0.976, 359) == pytest.approx(math.sqrt(0.976 * 0.024 / 359))
    assert binomial_noise(1.0, 100) == pytest.approx(0.005)  # never zero: half an example
    with pytest.raises(ValueError, match="`accuracy`"):
        binomial_noise(1.5, 10)
    with pytest.raises(ValueError, match="`n_samples`"):
        binomial_noise(0.5, 0)
