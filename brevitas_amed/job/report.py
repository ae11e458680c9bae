"""The report of a finished job: Pareto plot, per-layer bit chart, markdown summary.

Everything is drawn from ``summary.json`` and ``trials.json`` in the output directory, so
``brevitas-amed report OUTDIR`` redraws it at any time without the study storage. Figures are
drawn with matplotlib's object API (no pyplot, no global backend switch).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from brevitas_amed.job.records import Accuracy, FinalModel, Summary


def load_results(out: str | Path) -> tuple[Summary, list[dict[str, Any]]]:
    """Read ``summary.json`` and ``trials.json``.

    Raises:
        FileNotFoundError: The folder holds no finished job; says what to run.
    """
    out = Path(out)
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{str(summary_path)!r} not found: run 'brevitas-amed recipe ...' with output_dir {str(out)!r} first")
    trials_path = out / "trials.json"
    trials = json.loads(trials_path.read_text()) if trials_path.is_file() else []
    return Summary.from_dict(json.loads(summary_path.read_text())), trials


def write_report(out: str | Path) -> list[Path]:
    """Draw ``pareto.png`` and ``bits.png`` and write ``report.md``; returns the paths."""
    out = Path(out)
    summary, trials = load_results(out)
    paths = [pareto_plot(summary, trials, out / "pareto.png"), bits_plot(summary, out / "bits.png")]
    md = out / "report.md"
    md.write_text(markdown(summary))
    return paths + [md]


def label_points(ax, finals: Sequence[FinalModel], text) -> None:
    """One label per distinct point; models at the same point share it (``8b/6b``)."""
    at: dict[tuple[float, float], list[str]] = defaultdict(list)
    for f in finals:
        at[(round(f.latency_ratio, 6), round(100 * f.test_accuracy, 6))].append(text(f))
    for (x, y), names in at.items():
        ax.annotate("/".join(names), (x, y), textcoords="offset points", xytext=(5, -10), fontsize=8)


def pareto_plot(summary: Summary, trials: list[dict[str, Any]], path: Path) -> Path:
    ref = summary.uniform8_latency_cycles
    fig = Figure(figsize=(7, 4.8))
    ax = fig.subplots()
    done = [t for t in trials if t.get("state") == "COMPLETE" and t.get("values")]
    if done:
        ax.scatter([t["values"][1] / ref for t in done], [100 * t["values"][0] for t in done], s=10, alpha=0.35,
                   color="tab:gray", label=f"search trials (val, {len(done)})")
    searched = [f for f in summary.finals if f.kind == "search"]
    baselines = [f for f in summary.finals if f.kind == "baseline"]
    if searched:
        ax.scatter([f.latency_ratio for f in searched], [100 * f.test_accuracy for f in searched], s=70,
                   marker="*", color="tab:red", zorder=3, label=f"{summary.sampler} fine-tuned (test)")
    if baselines:
        ax.scatter([f.latency_ratio for f in baselines], [100 * f.test_accuracy for f in baselines], s=50,
                   marker="s", color="tab:blue", zorder=3, label="uniform fine-tuned (test)")
        label_points(ax, baselines, lambda f: f.label.replace("uniform-", "") + "b")
    return finish_latency_plot(fig, ax, summary.float_accuracy, summary.backend, summary.profile,
                               "top-1 accuracy (%)", f"{summary.recipe}: accuracy vs latency", path)


def finish_latency_plot(fig: Figure, ax, float_accuracy: Accuracy, backend: str, profile: str, ylabel: str,
                        title: str, path: Path) -> Path:
    """Float line, axis labels, legend; save."""
    ax.axhline(100 * float_accuracy.test, color="k", linestyle="--", linewidth=0.8, label="float (test)")
    ax.set_xlabel(f"latency / uniform 8-bit latency ({backend}, {profile})")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def bits_plot(summary: Summary, path: Path) -> Path:
    chosen = [f for f in summary.finals if f.kind != "baseline"] or summary.finals
    layers = list(chosen[0].bits) if chosen else []
    fig = Figure(figsize=(max(6, 0.35 * len(layers) + 2), 2.2 * max(1, len(chosen))))
    axes = fig.subplots(len(chosen) or 1, 1, squeeze=False)
    for ax, final in zip(axes[:, 0], chosen):
        w = [final.bits[layer][0] or 32 for layer in layers]
        a = [final.bits[layer][1] or 32 for layer in layers]
        xs = range(len(layers))
        ax.bar([x - 0.2 for x in xs], w, width=0.4, label="weights")
        ax.bar([x + 0.2 for x in xs], a, width=0.4, label="input activations")
        ax.set_ylim(0, 9)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("bits")
        ax.set_title(f"{final.label}: test {100 * final.test_accuracy:.1f}%, latency x{final.latency_ratio:.2f}", fontsize=9)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def qonnx_check(final: FinalModel) -> str:
    if final.qonnx is None:
        return "not exported"
    return {True: "pass", False: "FAIL", None: "not run"}[final.qonnx.verified]


def search_accuracy(final: FinalModel) -> str:
    """The search's validation accuracy of a searched model: the mean over the trials of its bits."""
    if final.search_accuracy is None:
        return "-"
    return f"{100 * final.search_accuracy:.2f}" + (f" ({final.evaluations})" if final.evaluations else "")


def markdown(summary: Summary) -> str:
    fa = summary.float_accuracy
    lines = [f"# {summary.recipe}: AMED mixed-precision report", "",
             f"- model `{summary.model}`, hardware `{summary.backend}` / `{summary.profile}`, "
             f"sampler `{summary.sampler}`, {summary.trials} trials, {summary.elapsed_s} s",
             f"- float accuracy: val {100 * fa.val:.2f}%, test {100 * fa.test:.2f}%",
             f"- uniform 8-bit latency: {summary.uniform8_latency_cycles:,} cycles", "",
             "| model | search val acc (%, trials) | test acc (%) | Δ vs float (pt) | latency (cycles) | vs 8-bit "
             "| size (KB) | QONNX check |",
             "|---|---|---|---|---|---|---|---|"]
    for f in summary.finals:
        mark = " (best)" if f.label == summary.best else ""
        lines.append(f"| {f.label}{mark} | {search_accuracy(f)} | {100 * f.test_accuracy:.2f} "
                     f"| {100 * (f.test_accuracy - fa.test):+.2f} | {f.latency_cycles:,} | {f.latency_ratio:.2f} "
                     f"| {f.size_bits / 8192:.1f} | {qonnx_check(f)} |")
    lines += ["", "Search val acc: what the search measured (validation accuracy after a trial's few adaptation "
              "steps), the mean over the trials that evaluated those bits (their number in brackets).", "",
              "![Pareto plot](pareto.png)", "", "![Per-layer bits](bits.png)", ""]
    return "\n".join(lines)
