"""Step 7: what the job found, as ``summary.json`` and ``trials.json``."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import optuna

from brevitas_amed.job.context import Job
from brevitas_amed.job.records import FinalModel, Summary
from brevitas_amed.job.search import FINISHED

log = logging.getLogger("brevitas_amed")


def selection_margin(threshold: float, n_val: int, z: float) -> float:
    """``z`` binomial standard errors of an accuracy ``threshold`` measured on ``n_val`` images."""
    return z * math.sqrt(max(threshold * (1 - threshold), 1 / n_val) / n_val)


def choose_best(job: Job, finals: list[FinalModel]) -> FinalModel | None:
    """The searched model to recommend, chosen on validation (the test split only reports).

    Validation accuracy is a noisy measurement on a finite split, and the search has already
    favoured allocations that were lucky on it. So a model qualifies only if its validation
    accuracy clears the quality score's accuracy floor by ``finetune.selection_z`` standard
    errors of the split; the best quality score among those wins. If none qualifies, the most
    accurate model wins (the faster one on a tie).
    """
    searched = [f for f in finals if f.kind == "search"]
    if not searched:
        return None
    threshold = job.quality.accuracy_threshold
    if threshold is not None:
        floor = threshold + selection_margin(threshold, len(job.data.val), job.recipe.finetune.selection_z)
        safe = [f for f in searched if f.val_accuracy >= floor]
        if not safe:
            log.warning("no searched model clears the accuracy floor %.4f on validation; recommending the most "
                        "accurate", floor)
            return max(searched, key=lambda f: (f.val_accuracy, -f.latency_cycles))
        searched = safe
    return max(searched, key=lambda f: job.quality.score(f.val_accuracy, f.latency_cycles))


def build_summary(job: Job, study: optuna.Study, finals: list[FinalModel], elapsed_s: float) -> Summary:
    """The summary of a finished job, with the model :func:`choose_best` recommends."""
    best = choose_best(job, finals)
    return Summary(
        recipe=job.recipe.name,
        model=job.recipe.model.name,
        backend=job.recipe.hardware.backend,
        profile=job.backend.profile.name,
        sampler=job.recipe.search.sampler,
        trials=len(study.get_trials(deepcopy=False, states=FINISHED)),
        float_accuracy=job.float_accuracy,
        uniform8_latency_cycles=job.reference_latency,
        uniform8_latency_seconds=job.reference_latency / job.backend.profile.clock_hz,
        float_size_bits=job.qmodel.float_size_bits(),
        best=best.label if best else None,
        finals=finals,
        elapsed_s=round(elapsed_s, 1),
    )


def trial_table(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial's number, state, parameters, values and user attributes (for the report)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "params": t.params,
                     "values": list(t.values) if t.values else None, **t.user_attrs})
    return rows


def write_results(job: Job, study: optuna.Study, summary: Summary) -> None:
    (job.out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=1))
    (job.out / "trials.json").write_text(json.dumps(trial_table(study), indent=1))
