"""What distilling from the float model changes in fine-tuning, measured on ``compare_seeds`` folders.

Two measurements:

- ``--pair A B``: every fine-tuned model of folder A (``seed*/models/*.json``) whose allocation
  folder B fine-tuned with other settings (another key): the mean change of validation and test
  accuracy from A to B, how many models got better or worse on test, by method and by latency.
  Both folders come from ``compare_seeds.py`` runs that share their studies (a labels-only run,
  ``--set finetune.distill=false``; copy its folder, then rerun without that option: the recipe
  distils), so the allocations are the same.
- ``--folder F --labels amed-t2,differentiable-1``: fine-tunes each labelled allocation of F's
  models ``--batch-seeds`` K times (batch seeds seed .. seed + K - 1, seed being the recipe's, so
  the first is the job's own fine-tuning), without and with distillation, and prints each
  accuracy, the means and the seconds per fine-tuning. F is a seed folder (``runs/x/seed3``); it
  is copied to a temporary folder first and left unchanged.

    python benchmarks/distill_gain.py --pair runs/compare_seeds_levels runs/compare_seeds
    python benchmarks/distill_gain.py --folder runs/compare_seeds_levels/seed3 \\
        --labels amed-t2,differentiable-1 --batch-seeds 5
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from brevitas_amed.job.context import build_job
from brevitas_amed.job.progress import no_progress
from brevitas_amed.job.recipe import load_recipe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_fidelity import finetuned  # noqa: E402  (the recipe's fine-tuning with other batch seeds)


def pair(a: Path, b: Path) -> None:
    rows = []
    for record in sorted(a.glob("seed*/models/*.json")):
        other = b / record.relative_to(a)
        if not other.is_file():
            continue
        x, y = json.loads(record.read_text()), json.loads(other.read_text())
        if x.get("knob_bits") != y.get("knob_bits") or x.get("key") == y.get("key"):
            continue
        rows.append((x["method"], x["latency_ratio"], y["val_accuracy"] - x["val_accuracy"],
                     y["test_accuracy"] - x["test_accuracy"]))
    if not rows:
        raise SystemExit(f"no model of {a} was fine-tuned with other settings in {b}")
    tests = [r[3] for r in rows]
    print(f"{len(rows)} models, {a} -> {b}: validation {100 * statistics.mean(r[2] for r in rows):+.2f} pt, "
          f"test {100 * statistics.mean(tests):+.2f} pt (median {100 * statistics.median(tests):+.2f}); "
          f"test better / worse / same: {sum(t > 0 for t in tests)} / {sum(t < 0 for t in tests)} / "
          f"{sum(t == 0 for t in tests)}")
    for method in sorted({r[0] for r in rows}):
        mine = [r[3] for r in rows if r[0] == method]
        print(f"  {method}: {len(mine)} models, test {100 * statistics.mean(mine):+.2f} pt")
    for name, keep in (("under 0.42 of the 8-bit latency", lambda r: r[1] < 0.42), ("0.42 and above", lambda r: r[1] >= 0.42)):
        part = [r[3] for r in rows if keep(r)]
        if part:
            print(f"  {name}: {len(part)} models, test {100 * statistics.mean(part):+.2f} pt")


def repeats(folder: Path, labels: list[str], batch_seeds: int) -> None:
    if not (folder / "recipe.yaml").is_file():
        raise SystemExit(f"{folder} has no recipe.yaml: give a seed folder of a compare_seeds run, like runs/x/seed3")
    missing = [label for label in labels if not (folder / "models" / f"{label}.json").is_file()]
    if missing:
        known = sorted(p.stem for p in (folder / "models").glob("*.json"))
        raise SystemExit(f"{folder} has no fine-tuned model {', '.join(missing)}; it has {', '.join(known) or 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / folder.name
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.onnx", "study.db*", "journal*"))
        for distill in (False, True):
            recipe = load_recipe(copy / "recipe.yaml", [f"output_dir={copy}", f"finetune.distill={str(distill).lower()}"])
            job = build_job(recipe, no_progress)
            floor = job.float_accuracy.val - 0.01
            for label in labels:
                bits = json.loads((copy / "models" / f"{label}.json").read_text())["knob_bits"]
                runs = [finetuned(job, bits, recipe.seed + k) for k in range(batch_seeds)]
                val, test, sec = ([r[i] for r in runs] for i in range(3))
                print(f"{label} {'distilled' if distill else 'labels only'}: validation "
                      f"{' '.join(f'{100 * v:.2f}' for v in val)} (mean {100 * statistics.mean(val):.2f}, "
                      f"{sum(v >= floor - 1e-12 for v in val)} of {len(val)} at float - 1 pt = {100 * floor:.2f}), "
                      f"test mean {100 * statistics.mean(test):.2f}, {statistics.mean(sec):.1f} s per fine-tuning",
                      flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", nargs=2, type=Path, metavar=("A", "B"))
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--labels", default="")
    parser.add_argument("--batch-seeds", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("brevitas_amed").setLevel(logging.WARNING)
    if args.pair:
        pair(*args.pair)
    elif args.folder and args.labels:
        repeats(args.folder, args.labels.split(","), args.batch_seeds)
    else:
        parser.error("give --pair A B, or --folder F --labels L1,L2")


if __name__ == "__main__":
    main()
