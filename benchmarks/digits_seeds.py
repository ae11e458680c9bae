"""The digits recipe over several seeds: is the recommended model within 1 point of float on test?

Each seed changes the data split, the float model, the shared weights and the search. The latency
cache is shared, so only the first seed simulates.

    python benchmarks/digits_seeds.py                  # seeds 0-4, the built-in recipe
    python benchmarks/digits_seeds.py --seeds 0,1 --set search.trials=60
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
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, within = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        cache = f"hardware.cache=sqlite:///{Path(tmp) / 'cache.db'}"
        for seed in seeds:
            recipe = load_recipe(None, [f"seed={seed}", f"output_dir={Path(tmp) / f'seed{seed}'}", cache,
                                        *args.overrides])
            started = time.time()
            summary = run(recipe)
            best = next(f for f in summary.finals if f.label == summary.best)
            drop = 100 * (summary.float_accuracy.test - best.test_accuracy)
            within += drop <= 1.0
            u4 = next((f for f in summary.finals if f.label == "uniform-4"), None)
            rows.append(f"| {seed} | {100 * summary.float_accuracy.test:.2f} | {best.label} | "
                        f"{100 * best.val_accuracy:.2f} | {100 * best.test_accuracy:.2f} | {-drop:+.2f} | "
                        f"{best.latency_ratio:.3f} | {f'{u4.latency_ratio:.3f}' if u4 else '-'} | "
                        f"{time.time() - started:.0f} |")
    print("| seed | float test (%) | recommended | val (%) | test (%) | Δ test (pt) | latency vs 8-bit "
          "| uniform-4 latency | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nwithin 1 point of float on test: {within} of {len(seeds)} seeds")


if __name__ == "__main__":
    main()
