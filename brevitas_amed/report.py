"""The report of a finished job: Pareto plot, per-layer bit chart, markdown summary.

Everything is drawn from ``summary.json`` and ``trials.json`` in the output directory, so
``brevitas-amed report OUTDIR`` redraws it at any time without the study storage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load_results(out: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
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
    return json.loads(summary_path.read_text()), trials


def write_report(out: str | Path) -> list[Path]:
    """Draw ``pareto.png`` and ``bits.png`` and write ``report.md``; returns the paths."""
    out = Path(out)
    summary, trials = load_results(out)
    paths = [pareto_plot(summary, trials, out / "pareto.png"), bits_plot(summary, out / "bits.png")]
    md = out / "report.md"
    md.write_text(markdown(summary))
    return paths + [md]


def pareto_plot(summary: dict[str, Any], trials: list[dict[str, Any]], path: Path, extra_series=None) -> Path:
    ref = summary["uniform8_latency_cycles"]
    fig, ax = plt.subplots(figsize=(7, 4.8))
    done = [t for t in trials if t.get("state") == "COMPLETE" and t.get("values")]
    if done:
        ax.scatter([t["values"][1] / ref for t in done], [100 * t["values"][0] for t in done], s=10, alpha=0.35,
                   color="tab:gray", label=f"search trials (val, {len(done)})")
    for series in extra_series or []:
        ax.plot(series["x"], series["y"], marker=series.get("marker", "o"), linestyle="-", label=series["label"])
    finals = summary["finals"]
    searched = [f for f in finals if f["kind"] == "search"]
    baselines = [f for f in finals if f["kind"] == "baseline"]
    if searched:
        ax.scatter([f["latency_ratio"] for f in searched], [100 * f["test_accuracy"] for f in searched], s=70,
                   marker="*", color="tab:red", zorder=3, label=f"{summary['sampler']} fine-tuned (test)")
    if baselines:
        ax.scatter([f["latency_ratio"] for f in baselines], [100 * f["test_accuracy"] for f in baselines], s=50,
                   marker="s", color="tab:blue", zorder=3, label="uniform fine-tuned (test)")
        for f in baselines:
            ax.annotate(f["label"].replace("uniform-", "") + "b", (f["latency_ratio"], 100 * f["test_accuracy"]),
                        textcoords="offset points", xytext=(5, -10), fontsize=8)
    return finish_latency_plot(fig, ax, summary, "top-1 accuracy (%)", f"{summary['recipe']}: accuracy vs latency", path)


def finish_latency_plot(fig, ax, result: dict[str, Any], ylabel: str, title: str, path: Path) -> Path:
    """Float line, axis labels, legend; save. ``result`` has float_accuracy, backend, profile."""
    ax.axhline(100 * result["float_accuracy"]["test"], color="k", linestyle="--", linewidth=0.8, label="float (test)")
    ax.set_xlabel(f"latency / uniform 8-bit latency ({result['backend']}, {result['profile']})")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def bits_plot(summary: dict[str, Any], path: Path) -> Path:
    chosen = [f for f in summary["finals"] if f["kind"] != "baseline"] or summary["finals"]
    layers = list(chosen[0]["bits"]) if chosen else []
    fig, axes = plt.subplots(len(chosen) or 1, 1, figsize=(max(6, 0.35 * len(layers) + 2), 2.2 * max(1, len(chosen))),
                             squeeze=False)
    for ax, final in zip(axes[:, 0], chosen):
        w = [final["bits"][layer][0] or 32 for layer in layers]
        a = [final["bits"][layer][1] or 32 for layer in layers]
        xs = range(len(layers))
        ax.bar([x - 0.2 for x in xs], w, width=0.4, label="weights")
        ax.bar([x + 0.2 for x in xs], a, width=0.4, label="input activations")
        ax.set_ylim(0, 9)
        ax.set_ylabel("bits")
        ax.set_title(f"{final['label']}: test {100 * final['test_accuracy']:.1f}%, latency x{final['latency_ratio']:.2f}", fontsize=9)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown(summary: dict[str, Any]) -> str:
    fa = summary["float_accuracy"]
    lines = [f"# {summary['recipe']}: AMED mixed-precision report", "",
             f"- model `{summary['model']}`, hardware `{summary['backend']}` / `{summary['profile']}`, "
             f"sampler `{summary['sampler']}`, {summary['trials']} trials, {summary['elapsed_s']} s",
             f"- float accuracy: val {100 * fa['val']:.2f}%, test {100 * fa['test']:.2f}%",
             f"- uniform 8-bit latency: {summary['uniform8_latency_cycles']:,} cycles", "",
             "| model | test acc (%) | Δ vs float (pt) | latency (cycles) | vs 8-bit | size (KB) | QONNX check |",
             "|---|---|---|---|---|---|---|"]
    for f in summary["finals"]:
        q = f.get("qonnx") or {}
        check = {True: "pass", False: "FAIL", None: "not run"}[q.get("verified")] if q else "not exported"
        mark = " (best)" if f["label"] == summary.get("best") else ""
        lines.append(f"| {f['label']}{mark} | {100 * f['test_accuracy']:.2f} | {100 * (f['test_accuracy'] - fa['test']):+.2f} "
                     f"| {f['latency_cycles']:,} | {f['latency_ratio']:.2f} | {f['size_bits'] / 8192:.1f} | {check} |")
    lines += ["", "![Pareto plot](pareto.png)", "", "![Per-layer bits](bits.png)", ""]
    return "\n".join(lines)
