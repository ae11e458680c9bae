"""`brevitas-amed compare` over several seeds: each method's fastest model within 1 point of float.

For each seed (which changes the data split, the float model, the shared weights, every search and
the fine-tuning) it runs ``run_compare`` on the recipe, every method at the same trial budget, then
picks for each method the fastest of its fine-tuned models whose *validation* accuracy is within
``--drop`` (default 1 point) of the float model's, and reports that model's latency (relative to
uniform 8-bit) and its test accuracy. A method with no such model scores 1.0 (the uniform 8-bit
fallback). The table ends with each method's median over the seeds, the median of the fastest model
within ``--drop`` of float on *test* (an oracle choice: the measure of earlier single-seed tables),
each method's median search compute, and how often the validation-chosen model held on test.

Runs resume: the output folder keeps every seed's study and fine-tuned models, so rerunning the
same command repeats nothing that finished; each seed's row is printed as it finishes, and
``results.json`` in the output folder holds all of them.

    nice python benchmarks/compare_seeds.py --output-dir runs/compare_seeds           # seeds 0-4, digits
    nice python benchmarks/compare_seeds.py --seeds 0,1 --methods amed,tpe --set search.trials=60
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

from brevitas_amed.job.compare import DEFAULT_METHODS, parse_methods, run_compare
from brevitas_amed.job.progress import no_progress
from brevitas_amed.job.recipe import load_recipe
from brevitas_amed.job.records import Comparison


def fastest_within(result: Comparison, method: str, drop: float) -> dict:
    """The method's fastest fine-tuned model within ``drop`` of float on validation, or the fallback."""
    fa = result.float_accuracy
    ok = [f for f in result.finals if f.method == method and f.val_accuracy >= fa.val - drop - 1e-12]
    if not ok:
        return {"label": None, "latency_ratio": 1.0, "test_drop_pt": None}
    best = min(ok, key=lambda f: (f.latency_ratio, -f.val_accuracy))
    return {"label": best.label, "latency_ratio": best.latency_ratio,
            "test_drop_pt": 100 * (fa.test - best.test_accuracy)}


def fastest_on_test(result: Comparison, method: str, drop: float) -> float:
    """The method's fastest fine-tuned model within ``drop`` of float on *test* (an oracle choice, the
    measure of earlier single-seed README tables), 1.0 if none."""
    fa = result.float_accuracy
    ok = [f.latency_ratio for f in result.finals if f.method == method and f.test_accuracy >= fa.test - drop - 1e-12]
    return min(ok, default=1.0)


def seed_row(seed: int, result: Comparison, methods: list[str], drop: float, seconds: float) -> dict:
    spent = {c.method: c for c in result.compute}
    return {"seed": seed, "seconds": seconds, "float_val": result.float_accuracy.val,
            "float_test": result.float_accuracy.test,
            "methods": {m: {**fastest_within(result, m, drop), "oracle_latency": fastest_on_test(result, m, drop),
                            "trials": spent[m].trials if m in spent else None,
                            "search_s": spent[m].seconds if m in spent else None} for m in methods}}


def cell(entry: dict) -> str:
    if entry["label"] is None:
        return "1.000 (none)"
    return f"{entry['latency_ratio']:.3f} ({-entry['test_drop_pt']:+.2f})"


def print_table(rows: list[dict], methods: list[str]) -> None:
    print("\nFastest model within 1 point of float on validation: latency vs uniform 8-bit "
          "(its test accuracy vs float, points)\n")
    print("| seed | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for row in rows:
        print(f"| {row['seed']} | " + " | ".join(cell(row["methods"][m]) for m in methods) + " |")
    medians = {m: statistics.median(r["methods"][m]["latency_ratio"] for r in rows) for m in methods}
    print("| **median** | " + " | ".join(f"**{medians[m]:.3f}**" for m in methods) + " |")
    if all("oracle_latency" in r["methods"][m] for r in rows for m in methods):
        oracle = {m: statistics.median(r["methods"][m]["oracle_latency"] for r in rows) for m in methods}
        print("| median, chosen on test (oracle) | " + " | ".join(f"{oracle[m]:.3f}" for m in methods) + " |")
    compute = []
    for m in methods:
        trials = [r["methods"][m]["trials"] for r in rows if r["methods"][m]["trials"] is not None]
        secs = [r["methods"][m]["search_s"] for r in rows if r["methods"][m]["search_s"] is not None]
        compute.append(f"{statistics.median(trials):.0f} trials, " if trials else "")
        compute[-1] += f"{statistics.median(secs):.0f} s" if secs else "-"
    print("| search compute (median) | " + " | ".join(compute) + " |")
    within = {m: sum(1 for r in rows if r["methods"][m]["test_drop_pt"] is not None
                     and r["methods"][m]["test_drop_pt"] <= 1.0 + 1e-9) for m in methods}
    print("| within 1 pt on test | " + " | ".join(f"{within[m]} of {len(rows)}" for m in methods) + " |")
    if "amed" in medians:
        others = {m: v for m, v in medians.items() if m != "amed"}
        verdict = all(medians["amed"] <= v + 1e-12 for v in others.values())
        print(f"\nAMED median {medians['amed']:.3f}; best other {min(others.values(), default=float('nan')):.3f}: "
              f"target (AMED no higher than any other method) {'met' if verdict else 'NOT met'} over {len(rows)} seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default=None)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--drop", type=float, default=0.01, help="accuracy drop allowed on validation (0.01 = 1 pt)")
    parser.add_argument("--output-dir", default="runs/compare_seeds")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    methods = parse_methods(args.methods)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        recipe = load_recipe(args.recipe, [f"seed={seed}", f"output_dir={out / f'seed{seed}'}",
                                           "export.qonnx=false", *args.overrides])
        started = time.time()
        result = run_compare(recipe, methods, progress=no_progress())
        rows.append(seed_row(seed, result, methods, args.drop, time.time() - started))
        results_path.write_text(json.dumps(rows, indent=1))
        print(f"seed {seed} ({time.time() - started:.0f} s): "
              + ", ".join(f"{m} {cell(rows[-1]['methods'][m])}" for m in methods), flush=True)
    print_table(rows, methods)


if __name__ == "__main__":
    main()
