"""What the search found, per allocation: the mean over every evaluation of one set of bits.

A trial's accuracy is one noisy draw (a few QAT steps on random batches, then a finite validation
set), and AMED evaluates a state its chain is stuck at again; its energy is the mean of those
evaluations. Ranking single trials would let one lucky draw of a re-evaluated state reach
fine-tuning although its mean loses, so the candidates rank allocations by their mean accuracy.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from typing import Callable

import optuna
from optuna.trial import TrialState


@dataclasses.dataclass(frozen=True)
class SearchedAllocation:
    """One set of parameters of a two-objective ``(accuracy, latency)`` study, over all its
    completed trials.

    Attributes:
        params: The study parameters.
        trial: The first completed trial with these parameters (names the candidate).
        accuracy: Mean accuracy over the completed trials.
        latency: Their latency (the first trial's; latency does not depend on the draw).
        evaluations: How many completed trials the mean is over.
        quality: The quality score of the mean accuracy at that latency.
    """

    params: dict
    trial: int
    accuracy: float
    latency: float
    evaluations: int
    quality: float


def searched_allocations(study: optuna.Study, score: Callable[[float, float], float]) -> list[SearchedAllocation]:
    """Completed trials grouped by identical parameters, in order of each group's first trial.

    Args:
        study: A study whose objective returns ``(accuracy, latency)``.
        score: ``score(accuracy, latency)``, the quality score recomputed from the mean accuracy
            (a job's ``QualityScore.score``).
    """
    groups: dict[tuple, list[optuna.trial.FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.values is not None and len(t.values) == 2:
            groups.setdefault(tuple(sorted(t.params.items())), []).append(t)
    out = []
    for trials in groups.values():
        first = min(trials, key=lambda t: t.number)
        accuracy = statistics.fmean(t.values[0] for t in trials)
        latency = float(first.values[1])
        out.append(SearchedAllocation(params=dict(first.params), trial=first.number, accuracy=accuracy,
                                      latency=latency, evaluations=len(trials), quality=score(accuracy, latency)))
    return sorted(out, key=lambda a: a.trial)


def pareto_front(allocations: list[SearchedAllocation]) -> list[SearchedAllocation]:
    """The allocations no other one dominates on (mean accuracy up, latency down), in order of
    accuracy, best first: a sweep down the accuracies keeping the lowest latency seen."""
    front: list[SearchedAllocation] = []
    fastest = math.inf  # lowest latency among strictly more accurate allocations
    ranked = sorted(allocations, key=lambda a: (-a.accuracy, a.latency, a.trial))
    for _, tied in itertools.groupby(ranked, key=lambda a: a.accuracy):
        tied = list(tied)
        lowest = tied[0].latency
        if lowest < fastest:
            front += [a for a in tied if a.latency == lowest]  # equal values, other bits: both stay
            fastest = lowest
    return front


def best_allocations(study: optuna.Study, score: Callable[[float, float], float], k: int) -> list[SearchedAllocation]:
    """``k`` allocations of the front of mean accuracies, best quality score first, one per
    latency (the same point of the front fine-tuned twice adds nothing)."""
    return by_quality(pareto_front(searched_allocations(study, score)), k)


def by_quality(front: list[SearchedAllocation], k: int,
               chosen: list[SearchedAllocation] | None = None) -> list[SearchedAllocation]:
    """``chosen`` (default none) filled up to ``k`` from ``front``, best quality score first, one per
    latency."""
    picked = list(chosen or [])
    for a in sorted(front, key=lambda a: (-a.quality, a.trial)):
        if len(picked) == k:
            break
        if all(a.latency != p.latency for p in picked):
            picked.append(a)
    return picked


def spread_allocations(study: optuna.Study, score: Callable[[float, float], float], k: int,
                       floor: float | None, margin: float) -> list[SearchedAllocation]:
    """``k`` allocations of the front of mean accuracies that bracket the proxy's error: the best
    quality score first, then faster front points spread evenly in latency down to the fastest
    whose mean accuracy is at most ``margin`` under ``floor``, fastest first.

    The short search-time adaptation reads aggressive allocations below what fine-tuning makes of
    them, so the ``k`` best scores (all just above the floor) would spend every fine-tuning on
    one corner of the front; OHQ's budgets and the differentiable strategy's penalties spread the
    same way. Slots the spread cannot fill (no faster front point within reach) go to the next
    best scores, one per latency, as in :func:`best_allocations`.

    Args:
        study: A study whose objective returns ``(accuracy, latency)``.
        score: ``score(accuracy, latency)`` of a mean accuracy.
        k: Number of allocations.
        floor: The quality score's accuracy floor; ``None`` puts no accuracy limit on the reach.
        margin: Accuracy under ``floor`` that a faster front point may read and still be picked.
    """
    front = pareto_front(searched_allocations(study, score))
    if not front:
        return []
    anchor = min(front, key=lambda a: (-a.quality, a.trial))
    reach = sorted((a for a in front if a.latency < anchor.latency
                    and (floor is None or a.accuracy >= floor - margin - 1e-12)),
                   key=lambda a: (a.latency, -a.accuracy, a.trial))
    picked: list[SearchedAllocation] = []
    if reach and k > 1:
        low, high = reach[0].latency, anchor.latency
        for i in range(k - 1):
            target = low + (high - low) * i / (k - 1)
            free = [a for a in reach if all(a.latency != p.latency for p in picked)]
            if free:
                picked.append(min(free, key=lambda a: (abs(a.latency - target), -a.accuracy, a.trial)))
    picked.sort(key=lambda a: a.latency)
    return by_quality(front, k, [anchor, *picked])
