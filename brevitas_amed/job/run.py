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
from pathlib import Path
from typing import Callable

import optuna

from brevitas_amed.job.context import Job, build_job
from brevitas_amed.job.finetune import finetune_and_export
from brevitas_amed.job.progress import Progress, tqdm_progress
from brevitas_amed.job.recipe import Recipe
from brevitas_amed.job.records import Summary
from brevitas_amed.job.report import write_report
from brevitas_amed.job.search import FINISHED, pareto_candidates, run_search, uniform_candidates
from brevitas_amed.job.summary import build_summary, write_results
from brevitas_amed.job.workers import (Helpers, Slot, local_devices, log_to_folder, slot_device, start_helpers,
                                      stop_helpers, wait_for_helpers)


def run(recipe: Recipe, progress: Progress | None = None, workers: int = 1, helpers: Helpers | None = None) -> Summary:
    """Run (or resume) the whole job; returns the summary also written to ``summary.json``.

    Args:
        workers: Local search processes, this one included (one GPU each, round-robin, when the
            recipe's device is ``auto`` or ``cuda`` and there are several). This process then
            waits for the others, runs what is missing of the trial budget, fine-tunes and reports.
        helpers: The other ``workers - 1`` processes, when the caller started them already
            (:func:`~brevitas_amed.job.workers.start_helpers`, as the command line does before its
            heavy imports); they are stopped before this returns.
    """
    progress = progress or tqdm_progress()
    started = time.time()
    job, study = search(recipe, progress, workers, settle=True, helpers=helpers)
    candidates = pareto_candidates(job, study) + uniform_candidates(job)
    finals = [finetune_and_export(job, c, progress) for c in candidates]
    summary = build_summary(job, study, finals, time.time() - started)
    write_results(job, study, summary)
    write_report(job.out)
    return summary


def join(recipe: Recipe, progress: Progress | None = None, workers: int = 1, helpers: Helpers | None = None,
         slot: Slot | None = None, log_name: str | None = None) -> int:
    """Search-only workers on a job another process runs (``--join``): they share its output
    directory (the float model and shared weights, made by whichever worker comes first) and its
    storage, and stop when the trial budget is spent. Returns the finished trials of the study.

    Args:
        slot: This process is a launcher's helper in this slot (it takes that slot's device).
        log_name: Once the output directory is prepared, send this process's output to
            ``output_dir/workers/<log_name>.log``.
    """
    device = slot_device(recipe, slot) if slot is not None else None
    _, study = search(recipe, progress or tqdm_progress(), workers, settle=False, helpers=helpers, device=device,
                      on_prepared=(lambda out: log_to_folder(out, log_name)) if log_name else None)
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def search(recipe: Recipe, progress: Progress, workers: int, settle: bool, helpers: Helpers | None = None,
           device: str | None = None, on_prepared: Callable[[Path], object] | None = None) -> tuple[Job, optuna.Study]:
    """Build the job and search with ``workers`` local processes (this one and helpers).

    Args:
        settle: After the helpers exit, wait for trials still running elsewhere (or for their
            heartbeat to lapse) and run what is missing of the budget, for fine-tuning.
        helpers: The ``workers - 1`` helpers, if already started; else they are started here.
        device: This process's device instead of the first local worker's.
    """
    try:
        devices = local_devices(recipe, workers)
        if helpers is None:
            helpers = start_helpers(recipe, workers - 1)
        job = build_job(recipe, progress, device=device or devices[0], on_prepared=on_prepared)
        study = run_search(job, progress, settle=settle and not helpers.members)
        wait_for_helpers(helpers, job.out)
        if helpers.members and settle:  # trials the helpers left running (a killed helper's) or failed
            study = run_search(job, progress)
    finally:
        if helpers is not None:
            stop_helpers(helpers)
    return job, study
