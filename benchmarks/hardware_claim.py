"""AMED's hardware claim: does the chosen allocation follow the hardware profile?

AMED (Kimhi et al.) reports that the per-layer bits its search picks adapt to the accelerator:
memory-bound layers, such as depthwise and late 1x1 convolutions, get fewer bits on a
low-memory setup. This benchmark searches MobileNetV2 at 32x32 input (real handwritten digits,
upscaled, RGB, trained from scratch) on the ``scalesim``, ``eyeriss`` and ``lowmem`` profiles
with the job's own machinery: the float model, the shared weights and the data are built once
(:func:`~brevitas_amed.job.context.build_job`), then each profile gets its own latency table,
quality score and study (:func:`~brevitas_amed.job.search.run_search`), all with the same seed, so
every profile's chain draws the same proposals and trial batches and only the latency differs.

The chosen allocation of a profile is the best-quality Pareto trial of its search, the one the
job fine-tunes first (``pareto_candidates``); no fine-tuning is run. Latency comes from the
``analytic`` backend: it equals real SCALE-Sim's Total Cycles on ``scalesim`` and ``eyeriss``
(ideal bandwidth) and is within 0.06% mean error on ``lowmem`` (finite bandwidth;
``benchmarks/latency_fidelity.py``), and it costs milliseconds where SCALE-Sim would take hours
for MobileNetV2's weight-heavy layers on ``lowmem``.

It writes ``hardware_claim.png`` (per-layer weight and activation bits of each profile's
allocation side by side, layers coloured by class, and each layer's share of the uniform 8-bit
latency per profile) and ``hardware_claim.json``, and prints:

1. per profile, the mean weight and activation bits of depthwise, late 1x1 and early 1x1 layers
   (searched knobs only; the first and last layers are pinned at 8 bits by the recipe), the
   latency ratio to uniform 8 bits and each class's share of it;
2. per profile and layer class, what the hardware rewards: the class's share of the 8-bit
   latency, the class's cycles at w4/a8, w8/a4, 4/4 and 2/2 relative to 8/8, and the quality
   score one knob of that class gains by going from 8 to 4 bits, in units of the evaluation noise
   (the search can only prefer low bits where this is large against the noise).

    PYTHONPATH=. python benchmarks/hardware_claim.py                       # ~28 min on 2 busy cores
    PYTHONPATH=. python benchmarks/hardware_claim.py --set search.trials=200 --out runs/hwclaim200
    PYTHONPATH=. python benchmarks/hardware_claim.py --replot runs/hardware_claim/hardware_claim.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Iterable, Mapping

from hw_backends.workload import Layer, Workload

REPO = Path(__file__).resolve().parents[1]
PROFILES = ("scalesim", "eyeriss", "lowmem")
CLASSES = ("depthwise", "late 1x1", "early 1x1", "conv", "linear")
SEARCHED_CLASSES = ("depthwise", "late 1x1", "early 1x1")
COLOURS = {"depthwise": "tab:orange", "late 1x1": "tab:red", "early 1x1": "tab:blue", "conv": "tab:green",
           "linear": "tab:purple"}
PROFILE_STYLES = ({"color": "black", "marker": "o"}, {"color": "tab:gray", "marker": "s", "linestyle": "--"},
                  {"color": "tab:brown", "marker": "^", "linestyle": ":"}, {"color": "tab:olive", "marker": "v"})
PAIRS = {"w4/a8": (4, 8), "w8/a4": (8, 4), "4/4": (4, 4), "2/2": (2, 2)}
# The benchmark's job: MobileNetV2 from scratch on digits at 32x32, sized for two busy CPU cores. Two
# adaptation steps leave the quantized model 8-15 points below float, so the accuracy floor is 20 points
# below float: with the digits recipe's 1 point every trial is penalised and latency plays no part.
# Every width is searched: the question is which widths the search picks per layer, and the latency
# levels would decide part of that from the latency table before the search starts.
BASE = ["name=hardware_claim", "model.name=mobilenet_v2", "model.weights=none", "model.pretrain.epochs=8",
        "data.name=digits", "data.image_size=32", "data.channels=3", "hardware.backend=analytic",
        "hardware.profile=scalesim", "search.sampler=amed", "search.trials=60", "search.warmup_epochs=2",
        "search.bit_choices=all", "search.adapt_steps=2", "quality.max_accuracy_drop=0.2",
        "finetune.candidates=quality", "export.qonnx=false"]


# --- pure functions (tested in tests/job/test_hardware_claim_benchmark.py) --------------------------
def layer_class(layer: Layer, late_area: int) -> str:
    """``depthwise`` (one input channel per group), ``late 1x1`` (a 1x1 convolution whose input map
    has at most ``late_area`` pixels), ``early 1x1`` (the other 1x1 convolutions), ``conv`` (any
    other convolution) or ``linear``."""
    if layer.kind == "linear":
        return "linear"
    if layer.groups > 1 and layer.groups == layer.in_channels:
        return "depthwise"
    if layer.kernel_h == 1 and layer.kernel_w == 1 and layer.groups == 1:
        return "late 1x1" if layer.in_h * layer.in_w <= late_area else "early 1x1"
    return "conv"


def classify(workload: Workload | Iterable[Layer], late_factor: int = 4) -> dict[str, str]:
    """``{layer: class}``; "late" 1x1 layers run on maps at most ``late_factor`` times the smallest
    convolution input map (at 32x32 input: the 2x2 and 1x1 maps, MobileNetV2's last two
    resolution stages, where each 1x1 layer has far more weights than input values)."""
    layers = list(workload.layers if isinstance(workload, Workload) else workload)
    areas = [l.in_h * l.in_w for l in layers if l.kind == "conv"]
    late_area = late_factor * min(areas) if areas else 0
    return {l.name: layer_class(l, late_area) for l in layers}


def class_means(bits: Mapping[str, tuple[int, int]], classes: Mapping[str, str],
                searched_w: Iterable[str], searched_a: Iterable[str]) -> dict[str, dict[str, float | int | None]]:
    """Mean weight bits over the class's layers with a searched weight knob, and mean activation
    bits over those with a searched input-activation knob (``None`` where the class has none)."""
    searched_w, searched_a = set(searched_w), set(searched_a)
    out: dict[str, dict[str, float | int | None]] = {}
    for c in CLASSES:
        ws = [bits[l][0] for l, k in classes.items() if k == c and l in searched_w]
        acts = [bits[l][1] for l, k in classes.items() if k == c and l in searched_a]
        out[c] = {"w": statistics.fmean(ws) if ws else None, "a": statistics.fmean(acts) if acts else None,
                  "n_w": len(ws), "n_a": len(acts)}
    return out


def mean_bits(allocations: list[Mapping[str, tuple[int, int]]]) -> dict[str, tuple[float, float]]:
    """Per-layer mean ``(weight, act)`` bits over several ``{layer: (w, a)}`` allocations."""
    return {l: (statistics.fmean(a[l][0] for a in allocations), statistics.fmean(a[l][1] for a in allocations))
            for l in allocations[0]}


def class_shares(cycles: Mapping[str, int], classes: Mapping[str, str]) -> dict[str, float]:
    """Each class's share of the summed ``{layer: cycles}``."""
    total = sum(cycles.values()) or 1
    return {c: sum(v for l, v in cycles.items() if classes[l] == c) / total for c in CLASSES}


def sensitivity(table: Mapping[str, Mapping[tuple[int, int], int]], classes: Mapping[str, str], beta: float,
                noise: float, searched_w: Iterable[str], searched_a: Iterable[str]) -> dict[str, dict[str, float]]:
    """What the hardware rewards, per class: its share of the 8/8 latency, its summed cycles at
    each pair of :data:`PAIRS` over those at 8/8, and the mean quality-score gain of moving one
    searched weight (``gain_w``) or activation (``gain_a``) knob of the class from 8 to 4 bits with
    everything else at 8, in units of ``noise`` (``beta * cycles saved / uniform-8 cycles``)."""
    reference = sum(t[(8, 8)] for t in table.values()) or 1
    searched_w, searched_a = set(searched_w), set(searched_a)
    out: dict[str, dict[str, float]] = {}
    for c in CLASSES:
        layers = [l for l, k in classes.items() if k == c]
        if not layers:
            continue
        at8 = sum(table[l][(8, 8)] for l in layers)
        row = {"share8": at8 / reference}
        for label, pair in PAIRS.items():
            row[label] = sum(table[l][pair] for l in layers) / at8 if at8 else 1.0
        gw = [beta * (table[l][(8, 8)] - table[l][(4, 8)]) / reference / noise for l in layers if l in searched_w]
        ga = [beta * (table[l][(8, 8)] - table[l][(8, 4)]) / reference / noise for l in layers if l in searched_a]
        row["gain_w"] = statistics.fmean(gw) if gw else float("nan")
        row["gain_a"] = statistics.fmean(ga) if ga else float("nan")
        out[c] = row
    return out


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None or value != value else format(value, spec)


def bits_table(results: Mapping[str, dict]) -> str:
    """Table 1: per profile, mean bits by class, the latency ratio and the class latency shares."""
    head = ("| profile | latency vs uniform 8 | search val acc | "
            + " | ".join(f"{c} w / a bits" for c in SEARCHED_CLASSES)
            + " | latency share dw / late 1x1 / early 1x1 / pinned |")
    lines = [head, "|" + "---|" * (3 + len(SEARCHED_CLASSES) + 1)]
    for p, r in results.items():
        m, s = r["class_means"], r["chosen_share"]
        cells = [f"{_fmt(m[c]['w'])} / {_fmt(m[c]['a'])}" for c in SEARCHED_CLASSES]
        pinned = s["conv"] + s["linear"]
        lines.append(f"| `{p}` | {r['latency_ratio']:.3f} | {100 * r['accuracy']:.1f}% | " + " | ".join(cells)
                     + f" | {s['depthwise']:.2f} / {s['late 1x1']:.2f} / {s['early 1x1']:.2f} / {pinned:.2f} |")
    if all("visited_means" in r for r in results.values()):
        lines += ["", "Mean over every allocation the chain proposed (completed trials, the uniform starts excluded):",
                  "", "| profile | proposals | mean latency vs uniform 8 | "
                  + " | ".join(f"{c} w / a bits" for c in SEARCHED_CLASSES) + " |",
                  "|" + "---|" * (3 + len(SEARCHED_CLASSES))]
        for p, r in results.items():
            m = r["visited_means"]
            lines.append(f"| `{p}` | {r['proposals']} | {_fmt(r['visited_ratio'], '.3f')} | "
                         + " | ".join(f"{_fmt(m[c]['w'])} / {_fmt(m[c]['a'])}" for c in SEARCHED_CLASSES) + " |")
    return "\n".join(lines)


def sensitivity_table(results: Mapping[str, dict]) -> str:
    """Table 2: per profile and class, what the hardware rewards."""
    lines = ["| profile | class | layers | share of 8/8 latency | " + " | ".join(f"{k} / 8/8" for k in PAIRS)
             + " | Q gain of one w knob 8->4 (noise units) | same, a knob |",
             "|" + "---|" * (5 + len(PAIRS) + 1)]
    for p, r in results.items():
        for c, row in r["sensitivity"].items():
            n = sum(1 for k in r["classes"].values() if k == c)
            lines.append(f"| `{p}` | {c} | {n} | {row['share8']:.3f} | "
                         + " | ".join(f"{row[k]:.3f}" for k in PAIRS)
                         + f" | {_fmt(row['gain_w'], '.3f')} | {_fmt(row['gain_a'], '.3f')} |")
    return "\n".join(lines)


def short(name: str) -> str:
    return name.replace("features.", "f").replace(".conv.", ".").replace("classifier.", "fc")


def draw(results: Mapping[str, dict], path: Path) -> None:
    """Per-layer weight (solid) and activation (hatched) bits of each profile's allocation, coloured
    by layer class, and in the last panel each layer's share of the uniform 8-bit latency."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    profiles = list(results)
    first = results[profiles[0]]
    layers = first["layers"]
    classes = first["classes"]
    x = list(range(len(layers)))
    colours = [COLOURS[classes[l]] for l in layers]
    fig = Figure(figsize=(max(12, 0.3 * len(layers)), 2.6 * (len(profiles) + 1)), constrained_layout=True)
    axes = fig.subplots(len(profiles) + 1, 1, sharex=True)
    for ax, p in zip(axes, profiles):
        r = results[p]
        w = [r["bits"][l][0] for l in layers]
        a = [r["bits"][l][1] for l in layers]
        ax.bar([i - 0.2 for i in x], w, width=0.4, color=colours, edgecolor="black", linewidth=0.3)
        ax.bar([i + 0.2 for i in x], a, width=0.4, color=colours, alpha=0.45, hatch="///", edgecolor="black",
               linewidth=0.3)
        if "visited_bits" in r:
            ax.plot([i - 0.2 for i in x], [r["visited_bits"][l][0] for l in layers], "k_", markersize=5,
                    label="mean weight bits of the chain's proposals")
            ax.plot([i + 0.2 for i in x], [r["visited_bits"][l][1] for l in layers], "_", color="dimgray",
                    markersize=5, label="mean activation bits of the chain's proposals")
        ax.set_ylim(0, 8.5)
        ax.set_yticks([2, 3, 4, 6, 8])
        ax.set_ylabel("bits")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{p}: latency {r['latency_ratio']:.3f} of uniform 8 bits, search val acc "
                     f"{100 * r['accuracy']:.1f}% (trial {r['trial']})", fontsize=10, loc="left")
    ax = axes[-1]
    for p, style in zip(profiles, itertools.cycle(PROFILE_STYLES)):
        share = results[p]["share8_per_layer"]
        ax.plot(x, [share[l] for l in layers], markersize=3, label=p, **style)
    ax.set_yscale("log")
    ax.set_ylabel("share of 8/8 latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_xticks(x)
    ax.set_xticklabels([short(l) for l in layers], rotation=90, fontsize=7)
    for tick, c in zip(ax.get_xticklabels(), colours):
        tick.set_color(c)
    handles = [Patch(color=COLOURS[c], label=c) for c in CLASSES if c in classes.values()]
    handles += [Patch(facecolor="white", edgecolor="black", label="weight bits (left bar)"),
                Patch(facecolor="white", edgecolor="black", hatch="///", label="activation bits (right bar)")]
    if "visited_bits" in first:
        handles += axes[0].get_legend_handles_labels()[0]
    axes[0].legend(handles=handles, fontsize=7, ncol=5, loc="lower left", bbox_to_anchor=(0, 1.12))
    fig.suptitle("MobileNetV2 at 32x32 (digits): AMED's allocation per hardware profile (analytic backend)",
                 fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def report(results: Mapping[str, dict], meta: Mapping[str, object]) -> str:
    return "\n".join([
        f"MobileNetV2, digits at 32x32 RGB; latency from the `analytic` backend (equals SCALE-Sim on scalesim/eyeriss, "
        f"0.06% mean error on lowmem, benchmarks/latency_fidelity.py); settings: {meta['settings']}",
        f"float accuracy val {100 * meta['float_val']:.2f}%, test {100 * meta['float_test']:.2f}%; evaluation noise "
        f"of one trial {meta['noise']:.4f}; quality beta {meta['beta']}",
        "", "Chosen allocation (best-quality Pareto trial) per profile; mean bits over searched knobs:", "",
        bits_table(results), "",
        "What each profile rewards, per layer class (cycles summed over the class; Q gain = beta x cycles saved "
        "/ uniform-8 cycles, over one trial's noise):", "", sensitivity_table(results)])


# --- the run ---------------------------------------------------------------------------------------
def search_profile(job, profile: str, out: Path) -> dict:
    """One profile's latency table, quality score and search on the shared job; its chosen allocation."""
    from brevitas_amed.job.context import make_quality
    from brevitas_amed.job.inputs import make_backend
    from brevitas_amed.job.progress import no_progress
    from optuna.trial import TrialState

    from brevitas_amed.job.search import evaluation_noise, pareto_candidates, run_search
    from brevitas_amed.job.space import allocation
    from brevitas_amed.quant import LatencyTable
    from brevitas_amed.quant.costs import layer_bits

    recipe = job.recipe.model_copy(update={
        "hardware": job.recipe.hardware.model_copy(update={"profile": profile}), "output_dir": str(out)})
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    backend = make_backend(recipe)
    latency = LatencyTable(job.qmodel, job.workload, backend)
    table_s = time.perf_counter() - started
    quality = make_quality(recipe, job.float_accuracy.val, latency.reference)
    pjob = dataclasses.replace(job, recipe=recipe, out=out, backend=backend, latency=latency, quality=quality)
    started = time.perf_counter()
    study = run_search(pjob, no_progress())
    search_s = time.perf_counter() - started
    best = pareto_candidates(pjob, study)[0]
    proposed = [allocation(pjob, t.params) for t in study.get_trials(deepcopy=False)
                if t.state == TrialState.COMPLETE and "fixed_params" not in t.system_attrs]
    q = job.qmodel
    bits = layer_bits(q, best.knob_bits)
    searched_w = [l for l, (w, _) in q.layer_knobs.items() if w is not None and q.knobs[w].searchable]
    searched_a = [l for l, (_, a) in q.layer_knobs.items() if a is not None and q.knobs[a].searchable]
    classes = classify(job.workload)
    visited = mean_bits([layer_bits(q, k) for k in proposed]) if proposed else bits
    chosen = latency.per_layer(best.knob_bits)
    at8 = {l: latency.table[l][(8, 8)] for l in chosen}
    noise = evaluation_noise(pjob)
    return {"profile": profile, "layers": list(chosen), "classes": classes, "bits": bits,
            "trial": best.trial, "accuracy": best.search_accuracy, "quality": best.search_quality,
            "latency_ratio": sum(chosen.values()) / latency.reference, "reference_cycles": latency.reference,
            "class_means": class_means(bits, classes, searched_w, searched_a),
            "proposals": len(proposed), "visited_bits": visited,
            "visited_means": class_means(visited, classes, searched_w, searched_a),
            "visited_ratio": statistics.fmean(latency.cycles(k) for k in proposed) / latency.reference
            if proposed else None,
            "chosen_share": class_shares(chosen, classes), "share8": class_shares(at8, classes),
            "share8_per_layer": {l: v / latency.reference for l, v in at8.items()},
            "sensitivity": sensitivity(latency.table, classes, quality.beta, noise, searched_w, searched_a),
            "trials": len(study.trials), "table_s": table_s, "search_s": search_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "hardware_claim")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="recipe override key=value (after the benchmark's own, see BASE)")
    parser.add_argument("--replot", type=Path, help="redraw figure and tables from a hardware_claim.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.replot:
        saved = json.loads(args.replot.read_text())
        results = {p: _untuple(r) for p, r in saved["results"].items()}
        draw(results, args.replot.with_suffix(".png"))
        print(report(results, saved["meta"]))
        return

    from brevitas_amed.job.context import build_job
    from brevitas_amed.job.progress import no_progress
    from brevitas_amed.job.recipe import load_recipe
    from brevitas_amed.job.search import evaluation_noise

    overrides = BASE + [f"output_dir={args.out / 'prepared'}"] + args.overrides
    recipe = load_recipe(None, overrides)
    started = time.perf_counter()
    job = build_job(recipe, no_progress())  # float model and shared weights, once
    build_s = time.perf_counter() - started
    results = {}
    for p in args.profiles.split(","):
        results[p] = search_profile(job, p, args.out / p)
        logging.info("%s: %d trials, table %.1f s, search %.0f s, latency %.3f of 8-bit", p, results[p]["trials"],
                     results[p]["table_s"], results[p]["search_s"], results[p]["latency_ratio"])
    s = recipe.search
    meta = {"settings": f"float epochs {recipe.model.pretrain.epochs}, shared-weight epochs {s.warmup_epochs}, "
                        f"{s.trials} trials per profile ({s.sampler}, adapt_steps {s.adapt_steps}, eval_batches "
                        f"{s.eval_batches or 'all'}), seed {recipe.seed}; build {build_s:.0f} s, searches "
                        + ", ".join(f"{p} {r['search_s']:.0f} s" for p, r in results.items()),
            "float_val": job.float_accuracy.val, "float_test": job.float_accuracy.test,
            "noise": evaluation_noise(job), "beta": recipe.quality.beta, "overrides": overrides}
    path = args.out / "hardware_claim.json"
    path.write_text(json.dumps({"meta": meta, "results": {p: _jsonable(r) for p, r in results.items()}}, indent=1))
    draw(results, path.with_suffix(".png"))
    print(report(results, meta))
    print(f"\nfigure: {path.with_suffix('.png')}\nresults: {path}")


def _jsonable(r: dict) -> dict:
    r = dict(r)
    for key in ("bits", "visited_bits"):
        if key in r:
            r[key] = {l: list(v) for l, v in r[key].items()}
    return r


def _untuple(r: dict) -> dict:
    r = dict(r)
    for key in ("bits", "visited_bits"):
        if key in r:
            r[key] = {l: tuple(v) for l, v in r[key].items()}
    return r


if __name__ == "__main__":
    main()
