"""Step 7: what the job found, as ``summary.json`` and ``trials.json``."""

from __future__ import annotations

import json
from typing import Any

import optuna

from brevitas_amed.job.context import Job
from brevitas_amed.job.records import FinalModel, Summary
from brevitas_amed.job.search import FINISHED


def build_summary(job: Job, study: optuna.Study, finals: list[FinalModel], elapsed_s: float) -> Summary:
    """The summary; the best model is chosen by quality score on validation accuracy (the test
    split only reports)."""
    searched = [f for f in finals if f.kind == "search"]
    best = max(searched, key=lambda f: job.quality.score(f.val_accuracy, f.latency_cycles), default=None)
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
