"""The digits recipe's targets: whole job <= 5 min on 2 cores, best mixed-precision model within
1.0 point of float test accuracy at <= 50% of the uniform-8-bit latency (scalesim profile).

Runs the built-in recipe from scratch (fresh output directory and a cold SCALE-Sim cache) and
prints the figures and whether each target is met.

    python benchmarks/digits_recipe.py [--set key=value ...]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from brevitas_amed.job.recipe import load_recipe
from brevitas_amed.job.run import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(None, [f"output_dir={Path(tmp) / 'out'}", f"hardware.cache=sqlite:///{Path(tmp) / 'cache.db'}",
                                    *args.overrides])
        started = time.time()
        summary = run(recipe)
        elapsed = time.time() - started
    float_acc = summary.float_accuracy.test
    best = next(f for f in summary.finals if f.label == summary.best)
    drop = 100 * (float_acc - best.test_accuracy)
    print("| figure | measured | target |\n|---|---|---|")
    print(f"| wall time, cold cache | {elapsed:.0f} s | <= 300 s {'(met)' if elapsed <= 300 else '(MISSED)'} |")
    print(f"| float test accuracy | {100 * float_acc:.2f}% | |")
    print(f"| best ({best.label}) test accuracy | {100 * best.test_accuracy:.2f}% ({-drop:+.2f} pt) | "
          f">= float - 1.0 pt {'(met)' if drop <= 1.0 else '(MISSED)'} |")
    print(f"| best latency / uniform 8-bit | {best.latency_ratio:.3f} | <= 0.5 {'(met)' if best.latency_ratio <= 0.5 else '(MISSED)'} |")
    for f in summary.finals:
        print(f"| {f.label} | {100 * f.test_accuracy:.2f}%, latency x{f.latency_ratio:.3f}, "
              f"{f.size_bits / 8192:.1f} KB | |")


if __name__ == "__main__":
    main()
