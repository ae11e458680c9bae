"""``brevitas-amed recipe [RECIPE] [--set key=value ...] [--workers N] [--join]``: run or resume the
whole job, with N local workers, or add a worker to a job running elsewhere."""

from __future__ import annotations

import argparse
import logging
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("recipe", help="run (or resume) a whole AMED job from a YAML recipe",
                       description="Search per-layer bits, fine-tune the best models, export QONNX, write a report. "
                                   "Running the same recipe again resumes where it stopped.")
    p.add_argument("recipe", nargs="?", default=None, help="recipe YAML (default: the built-in digits recipe)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set search.trials=50 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="validate the recipe, print it and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final summary (no progress bars)")
    p.add_argument("--workers", type=positive, default=1, metavar="N",
                   help="search and fine-tune with N local processes sharing the study (one GPU each, "
                        "round-robin, with device auto or cuda); this one then reports")
    p.add_argument("--join", action="store_true",
                   help="one more worker of the job that shares this recipe's output_dir and storage (another "
                        "machine needs both on shared storage): it searches and, on a database storage, takes "
                        "its share of the fine-tuning; the report stays with the process that runs the recipe "
                        "without --join")
    # a launcher's own helpers (brevitas_amed/job/workers.py): their slot and log name, not for users
    p.add_argument("--worker-slot", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-log", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brevitas_amed.job.recipe import dump_recipe, load_recipe
    from brevitas_amed.job.workers import Slot, start_helpers, stop_helpers

    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        print(dump_recipe(recipe), end="")
        return 0
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    # helpers first: they import torch and brevitas while this process does the same
    helpers = start_helpers(recipe, args.workers - 1, quiet=args.quiet)
    try:
        from brevitas_amed.job.progress import no_progress
        from brevitas_amed.job.run import join, run as run_job

        progress = no_progress() if args.quiet or not sys.stderr.isatty() else None  # no bars in log files
        if args.join:
            slot = Slot.parse(args.worker_slot) if args.worker_slot else None
            finished = join(recipe, progress, workers=args.workers, helpers=helpers, slot=slot,
                            log_name=args.worker_log)
            print(f"worker done: {finished} of {recipe.search.trials} trials finished in the study; the process "
                  f"running this recipe without --join reports (or run it once more)")
            return 0
        summary = run_job(recipe, progress, workers=args.workers, helpers=helpers)
    finally:
        stop_helpers(helpers)  # already stopped when the job ran; here for a failed import
    print_summary(summary, recipe.output_dir)
    return 0


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


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
