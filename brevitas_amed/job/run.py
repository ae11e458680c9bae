"""The whole job: recipe -> float model -> shared weights -> search -> fine-tune -> export -> report.

Every step leaves its result in the output directory, so running the same recipe again resumes:
the float model, the shared quantized weights and the Optuna study are reused, completed
trials are not repeated, and fine-tuned models whose bits and settings match are not retrained.
"""

from __future__ import annotations

import time

from brevitas_amed.job.context import build_job
from brevitas_amed.job.finetune import finetune_and_export
from brevitas_amed.job.progress import Progress, tqdm_progress
from brevitas_amed.job.recipe import Recipe
from brevitas_amed.job.records import Summary
from brevitas_amed.job.report import write_report
from brevitas_amed.job.search import pareto_candidates, run_search, uniform_candidates
from brevitas_amed.job.summary import build_summary, write_results


def run(recipe: Recipe, progress: Progress | None = None) -> Summary:
    """Run (or resume) the whole job; returns the summary also written to ``summary.json``."""
    progress = progress or tqdm_progress()
    started = time.time()
    job = build_job(recipe, progress)
    study = run_search(job, progress)
    candidates = pareto_candidates(job, study) + uniform_candidates(job)
    finals = [finetune_and_export(job, c, progress) for c in candidates]
    summary = build_summary(job, study, finals, time.time() - started)
    write_results(job, study, summary)
    write_report(job.out)
    return summary
