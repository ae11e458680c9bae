"""The whole job: recipe -> float model -> shared weights -> search -> fine-tune -> export -> report.

Every step leaves its result in the output directory, so running the same recipe again resumes:
the float model, the shared quantized weights and the Optuna study are reused, completed
trials are not repeated, and fine-tuned models whose bits and settings match are not retrained.

Several workers share one job: ``run(recipe, workers=N)`` searches with N local processes;
:func:`join` adds a search-only worker (on this or another machine sharing the output directory
and the storage). Fine-tuning and the report run once, in the process that called :func:`run`.
"""

from __future__ import annotations

import time

import optuna

from brevitas_amed.job.context import Job, build_job
from brevitas_amed.job.finetune import finetune_and_export
from brevitas_amed.job.progress import Progress, tqdm_progress
from brevitas_amed.job.recipe import Recipe
from brevitas_amed.job.records import Summary
from brevitas_amed.job.report import write_report
from brevitas_amed.job.search import FINISHED, pareto_candidates, run_search, uniform_candidates
from brevitas_amed.job.summary import build_summary, write_results
from brevitas_amed.job.workers import Helper, local_devices, start_helpers, stop_helpers, wait_for_helpers


def run(recipe: Recipe, progress: Progress | None = None, workers: int = 1) -> Summary:
    """Run (or resume) the whole job; returns the summary also written to ``summary.json``.

    Args:
        workers: Local search processes, this one included (one GPU each, round-robin, when the
            recipe's device is ``auto`` or ``cuda`` and there are several). This process then
            waits for the others, runs what is missing of the trial budget, fine-tunes and reports.
    """
    progress = progress or tqdm_progress()
    started = time.time()
    job, study = search(recipe, progress, workers, settle=True)
    candidates = pareto_candidates(job, study) + uniform_candidates(job)
    finals = [finetune_and_export(job, c, progress) for c in candidates]
    summary = build_summary(job, study, finals, time.time() - started)
    write_results(job, study, summary)
    write_report(job.out)
    return summary


def join(recipe: Recipe, progress: Progress | None = None, workers: int = 1) -> int:
    """Search-only workers on a job another process runs (``--join``): they share its output
    directory (the float model and shared weights, made by whichever worker comes first) and its
    storage, and stop when the trial budget is spent. Returns the finished trials of the study."""
    _, study = search(recipe, progress or tqdm_progress(), workers, settle=False)
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def search(recipe: Recipe, progress: Progress, workers: int, settle: bool) -> tuple[Job, optuna.Study]:
    """Build the job and search with ``workers`` local processes (this one and helpers).

    Args:
        settle: After the helpers exit, wait for trials still running elsewhere (or for their
            heartbeat to lapse) and run what is missing of the budget, for fine-tuning.
    """
    devices = local_devices(recipe, workers)
    helpers: list[Helper] = []
    try:
        # helpers start once the recipe is checked; they wait for the float model and shared weights
        job = build_job(recipe, progress, device=devices[0],
                        on_prepared=lambda out: helpers.extend(start_helpers(recipe, out, devices[1:])))
        study = run_search(job, progress, settle=settle and not helpers)
        wait_for_helpers(helpers)
        if helpers and settle:  # trials the helpers left running (a killed helper's) or failed
            study = run_search(job, progress)
    finally:
        stop_helpers(helpers)
    return job, study
