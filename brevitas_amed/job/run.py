"""The whole job: recipe -> float model -> shared weights -> search -> fine-tune -> export -> report.

Every step leaves its result in the output directory, so running the same recipe again resumes:
the float model, the shared quantized weights and the Optuna study are reused, completed
trials are not repeated, and fine-tuned models whose bits and settings match are not retrained.

Several workers share one job: ``run(recipe, workers=N)`` searches with N local processes;
:func:`join` adds a worker (on this or another machine sharing the output directory and the
storage). On a storage with a heartbeat (an RDB), every worker waits for the study to be final
once the budget is spent and then takes its share of the fine-tuning; the report is written
once, by the process that called :func:`run`, which waits for every model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import optuna

from brevitas_amed.job.context import Job, build_job
from brevitas_amed.job.finetune import finetune_all
from brevitas_amed.job.progress import Progress, tqdm_progress
from brevitas_amed.job.recipe import Recipe
from brevitas_amed.job.records import Candidate, Summary
from brevitas_amed.job.report import write_report
from brevitas_amed.job.search import FINISHED, pareto_candidates, run_search, uniform_candidates
from brevitas_amed.job.storage import settles
from brevitas_amed.job.summary import build_summary, write_results
from brevitas_amed.job.workers import (Helpers, Slot, local_devices, log_to_folder, slot_device, start_helpers,
                                      stop_helpers, wait_for_helpers)


def run(recipe: Recipe, progress: Progress | None = None, workers: int = 1, helpers: Helpers | None = None) -> Summary:
    """Run (or resume) the whole job; returns the summary also written to ``summary.json``.

    Args:
        workers: Local worker processes, this one included (one GPU each, round-robin, when the
            recipe's device is ``auto`` or ``cuda`` and there are several). They search, then
            share the fine-tuning; this process waits for every model and reports.
        helpers: The other ``workers - 1`` processes, when the caller started them already
            (:func:`~brevitas_amed.job.workers.start_helpers`, as the command line does before its
            heavy imports); they are stopped before this returns.
    """
    progress = progress or tqdm_progress()
    started = time.time()
    job, study, finals = work(recipe, progress, workers, helpers=helpers, launcher=True)
    summary = build_summary(job, study, finals, time.time() - started)
    write_results(job, study, summary)
    write_report(job.out)
    return summary


def join(recipe: Recipe, progress: Progress | None = None, workers: int = 1, helpers: Helpers | None = None,
         slot: Slot | None = None, log_name: str | None = None) -> int:
    """Workers on a job another process runs (``--join``): they share its output directory (the
    float model and shared weights, made by whichever worker comes first) and its storage, search
    until the trial budget is spent and, on a storage with a heartbeat, take the candidates no
    other worker is fine-tuning. Returns the finished trials of the study.

    Args:
        slot: This process is a launcher's helper in this slot (it takes that slot's device).
        log_name: Once the output directory is prepared, send this process's output to
            ``output_dir/workers/<log_name>.log``.
    """
    device = slot_device(recipe, slot) if slot is not None else None
    _, study, _ = work(recipe, progress or tqdm_progress(), workers, helpers=helpers, device=device,
                       on_prepared=(lambda out: log_to_folder(out, log_name)) if log_name else None)
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def work(recipe: Recipe, progress: Progress, workers: int, helpers: Helpers | None = None, launcher: bool = False,
         device: str | None = None, on_prepared: Callable[[Path], object] | None = None,
         ) -> tuple[Job, optuna.Study, list]:
    """Build the job, search with ``workers`` local processes (this one and helpers), fine-tune.

    Args:
        helpers: The ``workers - 1`` helpers, if already started; else they are started here.
        launcher: This process reports: it settles the study even without a heartbeat (after its
            helpers have exited) and waits for every fine-tuned model.
        device: This process's device instead of the first local worker's.

    Returns:
        The job, the study and the fine-tuned models (all of them for the launcher, this
        worker's share otherwise).
    """
    try:
        devices = local_devices(recipe, workers)
        if helpers is None:
            helpers = start_helpers(recipe, workers - 1)
        job = build_job(recipe, progress, device=device or devices[0], on_prepared=on_prepared)
        shared = settles(recipe, job.out)  # the study can be known final while workers live
        study = run_search(job, progress, settle=shared or (launcher and not helpers.members))
        if launcher and not shared and helpers.members:
            wait_for_helpers(helpers, job.out)  # no heartbeat: their trials end when they do
            study = run_search(job, progress)
        finals = finetune_all(job, candidates(job, study), progress, wait=launcher) if shared or launcher else []
        wait_for_helpers(helpers, job.out)
    finally:
        if helpers is not None:
            stop_helpers(helpers)
    return job, study, finals


def candidates(job: Job, study: optuna.Study) -> list[Candidate]:
    """What the job fine-tunes: the search's picks, then the uniform baselines."""
    return pareto_candidates(job, study) + uniform_candidates(job)
