"""The search's candidates for fine-tuning rank allocations by the mean of their evaluations."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest

from brevitas_amed.job.candidates import SearchedAllocation, pareto_front, searched_allocations, spread_allocations
from brevitas_amed.job.records import FinalModel
from brevitas_amed.job.report import search_accuracy
from brevitas_amed.job.search import pareto_candidates
from brevitas_amed.search import QualityScore

QUALITY = QualityScore(beta=0.3, reference_latency=100.0, accuracy_threshold=0.9)
DISTRIBUTIONS = {"w:conv": optuna.distributions.CategoricalDistribution([2, 4, 8]),
                 "a:relu": optuna.distributions.CategoricalDistribution([2, 4, 8])}


def job(top_k: int, candidates: str = "quality", spread_margin: float = 0.01) -> SimpleNamespace:
    recipe = SimpleNamespace(search=SimpleNamespace(sampler="amed", bit_choices="all"),
                             finetune=SimpleNamespace(top_k=top_k, candidates=candidates, spread_margin=spread_margin))
    space = {"conv": (2, 4, 8), "act:relu": (2, 4, 8)}
    return SimpleNamespace(recipe=recipe, quality=QUALITY, search_space=lambda: space)


def study_of(*evaluations: tuple[int, int, float, float]) -> optuna.Study:
    """An in-memory study of completed trials ``(w:conv, a:relu, accuracy, latency)``, each with the
    quality attribute the job's objective sets."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for w, a, accuracy, latency in evaluations:
        study.add_trial(optuna.trial.create_trial(
            params={"w:conv": w, "a:relu": a}, distributions=DISTRIBUTIONS, values=[accuracy, latency],
            user_attrs={"quality": QUALITY.score(accuracy, latency)}))
    return study


def test_a_lucky_draw_of_a_reevaluated_state_does_not_reach_fine_tuning() -> None:
    # (4, 4) was evaluated three times; its second draw (0.99) beats everything, its mean (0.96)
    # loses to (4, 8) at the same latency, measured once at 0.97.
    study = study_of((8, 8, 0.98, 100.0), (4, 4, 0.95, 50.0), (4, 4, 0.99, 50.0), (4, 8, 0.97, 50.0),
                     (4, 4, 0.94, 50.0), (2, 2, 0.60, 20.0))
    assert [t.number for t in study.best_trials if t.values[1] == 50.0] == [2]  # what single trials rank

    picked = pareto_candidates(job(top_k=2), study)

    assert [c.label for c in picked] == ["amed-t3", "amed-t0"]
    assert picked[0].knob_bits == {"conv": 4, "act:relu": 8}
    assert picked[0].evaluations == 1 and picked[0].search_accuracy == pytest.approx(0.97)
    assert picked[1].knob_bits == {"conv": 8, "act:relu": 8}


def test_a_reevaluated_state_is_named_after_its_first_trial_and_scored_on_its_mean() -> None:
    study = study_of((8, 8, 0.98, 100.0), (4, 4, 0.95, 50.0), (4, 8, 0.93, 50.0), (4, 4, 0.99, 50.0),
                     (4, 4, 0.97, 50.0))

    [best] = pareto_candidates(job(top_k=1), study)

    assert best.label == "amed-t1" and best.trial == 1 and best.knob_bits == {"conv": 4, "act:relu": 4}
    assert best.evaluations == 3
    assert best.search_accuracy == pytest.approx(0.97)
    assert best.search_quality == pytest.approx(QUALITY.score(0.97, 50.0))


def test_the_mean_below_the_threshold_is_penalised_as_a_mean() -> None:
    # one draw above the 0.9 floor and one below: the score of the mean, not the mean of the scores
    study = study_of((2, 2, 0.96, 20.0), (2, 2, 0.80, 20.0))
    [allocation] = searched_allocations(study, QUALITY.score)
    assert allocation.accuracy == pytest.approx(0.88) and allocation.evaluations == 2
    assert allocation.quality == pytest.approx(QUALITY.score(0.88, 20.0))


def test_only_completed_trials_count() -> None:
    study = study_of((4, 4, 0.95, 50.0))
    study.add_trial(optuna.trial.create_trial(params={"w:conv": 4, "a:relu": 4}, distributions=DISTRIBUTIONS,
                                              state=optuna.trial.TrialState.PRUNED))
    study.add_trial(optuna.trial.create_trial(params={"w:conv": 4, "a:relu": 4}, distributions=DISTRIBUTIONS,
                                              state=optuna.trial.TrialState.FAIL))
    [allocation] = searched_allocations(study, QUALITY.score)
    assert allocation.evaluations == 1 and allocation.accuracy == pytest.approx(0.95)
    assert pareto_candidates(job(top_k=3), optuna.create_study(directions=["maximize", "minimize"])) == []


def test_pareto_front_of_means_keeps_ties_and_drops_dominated() -> None:
    def allocation(trial: int, accuracy: float, latency: float) -> SearchedAllocation:
        return SearchedAllocation(params={"n": trial}, trial=trial, accuracy=accuracy, latency=latency,
                                  evaluations=1, quality=0.0)

    points = [allocation(0, 0.98, 100), allocation(1, 0.98, 100), allocation(2, 0.98, 120),
              allocation(3, 0.97, 100), allocation(4, 0.95, 50), allocation(5, 0.95, 60), allocation(6, 0.99, 130)]
    assert [a.trial for a in pareto_front(points)] == [6, 0, 1, 4]


def test_one_candidate_per_latency() -> None:
    study = study_of((4, 4, 0.96, 50.0), (4, 8, 0.96, 50.0), (8, 8, 0.98, 100.0))
    assert [c.label for c in pareto_candidates(job(top_k=3), study)] == ["amed-t0", "amed-t2"]


def test_records_without_evaluations_still_load_and_the_report_shows_them() -> None:
    old = FinalModel.from_dict({"label": "amed-t5", "kind": "search", "method": "amed", "knob_bits": {"conv": 4},
                                "trial": 5, "search_accuracy": 0.97})
    assert old.evaluations is None and search_accuracy(old) == "97.00"
    new = FinalModel(label="amed-t5", kind="search", method="amed", knob_bits={"conv": 4}, trial=5,
                     search_accuracy=0.97, evaluations=3)
    assert FinalModel.from_dict(new.to_dict()).evaluations == 3 and search_accuracy(new) == "97.00 (3)"
    assert search_accuracy(FinalModel(label="uniform-8", kind="baseline", method="uniform", knob_bits={})) == "-"


# (w, a, accuracy, latency); quality scores with the 0.9 floor: t2 0.700 (the best), t3 0.695,
# t1 0.690, t0 0.685, t4 0.615 (under the floor), t5 far under it
FRONT = ((8, 8, 0.985, 100.0), (8, 4, 0.93, 80.0), (4, 8, 0.91, 70.0), (4, 4, 0.895, 50.0),
         (4, 2, 0.885, 40.0), (2, 2, 0.70, 20.0))


def test_spread_candidates_reach_below_the_floor_by_the_margin() -> None:
    study = study_of(*FRONT)
    assert [c.label for c in pareto_candidates(job(top_k=3), study)] == ["amed-t2", "amed-t3", "amed-t1"]
    # two points of margin reach t4 (0.885, 1.5 points under the floor): the fastest, then the middle
    spread = pareto_candidates(job(top_k=3, candidates="spread", spread_margin=0.02), study)
    assert [c.label for c in spread] == ["amed-t2", "amed-t4", "amed-t3"]
    assert spread[1].knob_bits == {"conv": 4, "act:relu": 2} and spread[1].search_accuracy == pytest.approx(0.885)


def test_spread_slots_without_a_faster_point_in_reach_go_to_the_best_scores() -> None:
    study = study_of(*FRONT)
    # one point of margin reaches only t3 (0.895): the third slot is the next best score, t1
    assert [a.trial for a in spread_allocations(study, QUALITY.score, 3, 0.9, 0.01)] == [2, 3, 1]
    # no margin: nothing faster clears the floor, so the quality ranking
    assert [a.trial for a in spread_allocations(study, QUALITY.score, 3, 0.9, 0.0)] == [2, 3, 1]
    assert [a.trial for a in spread_allocations(study, QUALITY.score, 1, 0.9, 0.5)] == [2]
    # no floor: the spread reaches the fastest front point; 45 is as far from 40 as from 50, and
    # the more accurate one wins
    assert [a.trial for a in spread_allocations(study, QUALITY.score, 3, None, 0.0)] == [2, 5, 3]
    assert spread_allocations(optuna.create_study(directions=["maximize", "minimize"]), QUALITY.score, 3, 0.9,
                              0.01) == []


def test_spread_picks_one_candidate_per_latency() -> None:
    # t1 and t2, other bits, are one point of the front under the anchor t0: one of them is fine-tuned
    study = study_of((8, 8, 0.99, 60.0), (4, 4, 0.90, 50.0), (4, 8, 0.90, 50.0))
    assert len(pareto_front(searched_allocations(study, QUALITY.score))) == 3
    picked = spread_allocations(study, QUALITY.score, 3, 0.95, 0.1)
    assert [a.trial for a in picked] == [0, 1]
