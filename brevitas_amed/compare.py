"""Every method on one recipe: AMED, Optuna's TPE and NSGA-II, OHQ, differentiable precision and
uniform bits, all fine-tuned, evaluated and exported the same way, on one plot and in one table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from brevitas_amed import pipeline  # noqa: E402
from brevitas_amed.recipe import Recipe  # noqa: E402
from brevitas_amed.report import finish_latency_plot  # noqa: E402

log = logging.getLogger("brevitas_amed")

SEARCH_METHODS = ("amed", "tpe", "nsga2", "random")
STRATEGY_METHODS = ("ohq", "differentiable")
METHODS = SEARCH_METHODS + STRATEGY_METHODS + ("uniform",)
DEFAULT_METHODS = ("amed", "tpe", "nsga2", "ohq", "differentiable", "uniform")


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {unknown or 'empty list'}; choose from {', '.join(METHODS)}")
    return methods


def _search_job(job: pipeline.Job, sampler: str) -> pipeline.Job:
    """The same job with another sampler; its study is named ``<recipe>-<sampler>`` (AMED keeps the
    recipe's own study, so a finished ``brevitas-amed recipe`` run is reused)."""
    search = job.recipe.search.model_copy(update={
        "sampler": sampler,
        "study_name": job.recipe.search.study_name or (job.recipe.name if sampler == "amed" else f"{job.recipe.name}-{sampler}"),
    })
    return dataclasses.replace(job, recipe=job.recipe.model_copy(update={"search": search}))


def strategy_candidates(job: pipeline.Job, method: str) -> list[dict[str, Any]]:
    from brevitas_amed.strategies import StrategyContext
    from brevitas_amed.strategies import differentiable, ohq

    ctx = StrategyContext(qmodel=job.qmodel, float_model=job.float_model, workload=job.workload, backend=job.backend,
                          train_loader=job.loaders["train"], val_loader=job.loaders["val"],
                          calib_batches=job.recipe.quantization.calibration_batches,
                          size_limit_bits=job.quality.max_size_bits, seed=job.recipe.seed)
    job.qmodel.load_state_dict(job.base_state)
    module = {"ohq": ohq, "differentiable": differentiable}[method]
    started = time.time()
    allocations = module.propose(ctx, n_points=job.recipe.finetune.top_k)
    log.info("%s: %d allocations in %.1f s", method, len(allocations), time.time() - started)
    return [{"label": f"{method}-{i + 1}", "kind": "strategy", "method": method, "knob_bits": bits}
            for i, bits in enumerate(allocations)]


def run_compare(recipe: Recipe, methods: list[str], progress=None) -> dict[str, Any]:
    """Run every method and write ``compare.json``, ``compare.md`` and ``compare.png``."""
    progress = progress or pipeline._tqdm_factory()
    job = pipeline.build_job(recipe, progress)
    finals: list[dict[str, Any]] = []
    for method in methods:
        if method in SEARCH_METHODS:
            sjob = _search_job(job, method)
            study = pipeline.run_search(sjob, progress)
            candidates = [{**c, "method": method} for c in pipeline.pareto_candidates(sjob, study)]
        elif method == "uniform":
            candidates = [{**c, "method": "uniform"} for c in pipeline.uniform_candidates(job)]
        else:
            candidates = strategy_candidates(job, method)
        finals += [{**pipeline.finetune_and_export(job, c, progress), "method": method} for c in candidates]
    result = {"recipe": recipe.name, "float_accuracy": job.float_accuracy,
              "uniform8_latency_cycles": job.reference_latency, "backend": recipe.hardware.backend,
              "profile": job.backend.profile.name, "methods": methods, "finals": finals}
    out = Path(job.out)
    (out / "compare.json").write_text(json.dumps(result, indent=1))
    (out / "compare.md").write_text(compare_markdown(result))
    compare_plot(result, out / "compare.png")
    return result


def compare_plot(result: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.8))
    markers = {"amed": "*", "tpe": "^", "nsga2": "v", "random": "x", "ohq": "D", "differentiable": "P", "uniform": "s"}
    for method in result["methods"]:
        pts = sorted((f["latency_ratio"], 100 * f["test_accuracy"]) for f in result["finals"] if f.get("method") == method)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers.get(method, "o"), markersize=9,
                    linestyle="-", alpha=0.85, label=method)
    return finish_latency_plot(fig, ax, result, "test top-1 accuracy (%), after fine-tuning",
                               f"{result['recipe']}: all methods, fine-tuned the same way", path)


def compare_markdown(result: dict[str, Any]) -> str:
    fa = result["float_accuracy"]["test"]
    lines = [f"# {result['recipe']}: methods compared", "",
             f"float test accuracy {100 * fa:.2f}%, uniform 8-bit latency {result['uniform8_latency_cycles']:,} cycles "
             f"({result['backend']}/{result['profile']})", "",
             "| method | model | test acc (%) | Δ vs float (pt) | latency vs 8-bit | size (KB) | QONNX |",
             "|---|---|---|---|---|---|---|"]
    for f in sorted(result["finals"], key=lambda f: (result["methods"].index(f["method"]), f["latency_ratio"])):
        q = (f.get("qonnx") or {}).get("verified")
        lines.append(f"| {f['method']} | {f['label']} | {100 * f['test_accuracy']:.2f} | {100 * (f['test_accuracy'] - fa):+.2f} "
                     f"| {f['latency_ratio']:.3f} | {f['size_bits'] / 8192:.1f} | {'pass' if q else 'not verified' if q is None else 'FAIL'} |")
    return "\n".join(lines + ["", "![compare](compare.png)", ""])
