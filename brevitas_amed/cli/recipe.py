"""``brevitas-amed recipe [RECIPE] [--set key=value ...]``: run or resume the whole job."""

from __future__ import annotations

import argparse
import logging


def add_parser(sub) -> None:
    p = sub.add_parser("recipe", help="run (or resume) a whole AMED job from a YAML recipe",
                       description="Search per-layer bits, fine-tune the best models, export QONNX, write a report. "
                                   "Running the same recipe again resumes where it stopped.")
    p.add_argument("recipe", nargs="?", default=None, help="recipe YAML (default: the built-in digits recipe)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set search.trials=50 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="validate the recipe, print it and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brevitas_amed.job.recipe import dump_recipe, load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        print(dump_recipe(recipe), end="")
        return 0
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    from brevitas_amed.job.run import run as run_job

    summary = run_job(recipe)
    print_summary(summary, recipe.output_dir)
    return 0


def print_summary(summary, output_dir: str) -> None:
    """One line per fine-tuned model, the best marked ``*``."""
    from brevitas_amed.job.report import qonnx_check

    print(f"float test accuracy {100 * summary.float_accuracy.test:.2f}%; "
          f"uniform 8-bit latency {summary.uniform8_latency_cycles:,} cycles")
    for f in summary.finals:
        mark = "*" if f.label == summary.best else " "
        print(f"{mark} {f.label:<16} test {100 * f.test_accuracy:6.2f}%  latency x{f.latency_ratio:.3f}  "
              f"size {f.size_bits / 8192:7.1f} KB  qonnx {qonnx_check(f)}")
    print(f"report: {output_dir}/report.md  ({summary.elapsed_s} s)")
