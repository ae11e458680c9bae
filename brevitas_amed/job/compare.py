"""Every method on one recipe: AMED, Optuna's TPE and NSGA-II, OHQ, differentiable precision and
uniform bits, all fine-tuned, evaluated and exported the same way, on one plot and in one table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import optuna
from matplotlib.figure import Figure

from brevitas_amed.job.context import Job, build_job
from brevitas_amed.job.finetune import finetune_and_export
from brevitas_amed.job.inputs import reseed
from brevitas_amed.job.progress import Progress, tqdm_progress
from brevitas_amed.job.recipe import Recipe
from brevitas_amed.job.records import Candidate, Comparison, SearchCompute
from brevitas_amed.job.report import finish_latency_plot, qonnx_check
from brevitas_amed.job.search import pareto_candidates, run_search, uniform_candidates

log = logging.getLogger("brevitas_amed")

SEARCH_METHODS = ("amed", "tpe", "nsga2", "random")
STRATEGY_METHODS = ("ohq", "differentiable")
METHODS = SEARCH_METHODS + STRATEGY_METHODS + ("uniform",)
DEFAULT_METHODS = ("amed", "tpe", "nsga2", "ohq", "differentiable", "uniform")
MARKERS = {"amed": "*", "tpe": "^", "nsga2": "v", "random": "x", "ohq": "D", "differentiable": "P", "uniform": "s"}


def parse_methods(text: str) -> list[str]:
    """``"amed,tpe"`` -> ``["amed", "tpe"]``.

    Raises:
        ValueError: An unknown method or an empty list.
    """
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {unknown or 'empty list'}; choose from {', '.join(METHODS)}")
    return methods


def search_job(job: Job, sampler: str) -> Job:
    """The same job with another sampler, in a study of its own: ``<study>-<sampler>``, where
    ``<study>`` is ``search.study_name`` or the recipe's name. AMED keeps ``<study>`` itself, so a
    finished ``brevitas-amed recipe`` run is reused."""
    study = job.recipe.search.study_name or job.recipe.name
    search = job.recipe.search.model_copy(update={
        "sampler": sampler, "study_name": study if sampler == "amed" else f"{study}-{sampler}"})
    return dataclasses.replace(job, recipe=job.recipe.model_copy(update={"search": search}))


def strategy_candidates(job: Job, method: str) -> list[Candidate]:
    from brevitas_amed.strategies import StrategyContext, differentiable, ohq

    ctx = StrategyContext(qmodel=job.qmodel, float_model=job.float_model, latency=job.latency,
                          train_loader=job.loaders["train"], val_loader=job.loaders["val"],
                          calib_batches=job.recipe.quantization.calibration_batches,
                          size_limit_bits=job.quality.max_size_bits, seed=job.recipe.seed)
    job.qmodel.load_state_dict(job.base_state)
    reseed(job.loaders, job.recipe.seed)  # the same batches whatever ran before (a resume runs less)
    module = {"ohq": ohq, "differentiable": differentiable}[method]
    started = time.time()
    allocations = module.propose(ctx, n_points=job.recipe.finetune.top_k)
    log.info("%s: %d allocations in %.1f s", method, len(allocations), time.time() - started)
    return [Candidate(label=f"{method}-{i + 1}", kind="strategy", method=method, knob_bits=bits)
            for i, bits in enumerate(allocations)]


def candidates_of(job: Job, method: str, progress: Progress) -> tuple[list[Candidate], SearchCompute]:
    """A method's candidates and what finding them cost."""
    if method in SEARCH_METHODS:
        sjob = search_job(job, method)
        study = run_search(sjob, progress)
        return pareto_candidates(sjob, study), study_compute(method, study)
    if method == "uniform":
        return uniform_candidates(job), SearchCompute(method, None, 0.0)
    started = time.time()
    candidates = strategy_candidates(job, method)
    return candidates, SearchCompute(method, None, time.time() - started)


def study_compute(method: str, study: optuna.Study) -> SearchCompute:
    """Finished trials, their summed duration and the distinct allocations they evaluated."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    seconds = sum(t.duration.total_seconds() for t in done if t.duration is not None)
    distinct = {tuple(sorted(t.params.items())) for t in done}
    return SearchCompute(method, len(done), seconds, len(distinct))


def run_compare(recipe: Recipe, methods: list[str], progress: Progress | None = None) -> Comparison:
    """Run every method and write ``compare.json``, ``compare.md`` and ``compare.png``."""
    progress = progress or tqdm_progress()
    job = build_job(recipe, progress)
    finals, compute = [], []
    for method in methods:
        candidates, spent = candidates_of(job, method, progress)
        compute.append(spent)
        finals += [finetune_and_export(job, c, progress) for c in candidates]
    result = Comparison(recipe=recipe.name, float_accuracy=job.float_accuracy,
                        uniform8_latency_cycles=job.reference_latency, backend=recipe.hardware.backend,
                        profile=job.backend.profile.name, methods=methods, finals=finals, compute=compute)
    out = Path(job.out)
    (out / "compare.json").write_text(json.dumps(result.to_dict(), indent=1))
    (out / "compare.md").write_text(compare_markdown(result))
    compare_plot(result, out / "compare.png")
    return result


def compare_plot(result: Comparison, path: Path) -> Path:
    fig = Figure(figsize=(7, 4.8))
    ax = fig.subplots()
    for method in result.methods:
        pts = sorted((f.latency_ratio, 100 * f.test_accuracy) for f in result.finals if f.method == method)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS.get(method, "o"), markersize=9,
                    linestyle="-", alpha=0.85, label=method)
    return finish_latency_plot(fig, ax, result.float_accuracy, result.backend, result.profile,
                               "test top-1 accuracy (%), after fine-tuning",
                               f"{result.recipe}: all methods, fine-tuned the same way", path)


def compare_markdown(result: Comparison) -> str:
    """The table of every method's fine-tuned models, each beside the search compute that found it."""
    fa = result.float_accuracy.test
    spent = {c.method: c for c in result.compute}
    lines = [f"# {result.recipe}: methods compared", "",
             f"float test accuracy {100 * fa:.2f}%, uniform 8-bit latency {result.uniform8_latency_cycles:,} cycles "
             f"({result.backend}/{result.profile}). Search compute: the method's finished trials (distinct "
             "allocations) and seconds (summed trial durations; a strategy's wall time); fine-tuning, the same for "
             "every method, is not counted.", "",
             "| method | model | test acc (%) | Δ vs float (pt) | latency vs 8-bit | size (KB) | QONNX "
             "| search trials | search time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in sorted(result.finals, key=lambda f: (result.methods.index(f.method), f.latency_ratio)):
        c = spent.get(f.method)
        trials = "-" if c is None or c.trials is None else f"{c.trials} ({c.evaluations})"
        lines.append(f"| {f.method} | {f.label} | {100 * f.test_accuracy:.2f} | {100 * (f.test_accuracy - fa):+.2f} "
                     f"| {f.latency_ratio:.3f} | {f.size_bits / 8192:.1f} | {qonnx_check(f)} "
                     f"| {trials} | {'-' if c is None else f'{c.seconds:.1f}'} |")
    return "\n".join(lines + ["", "![compare](compare.png)", ""])
