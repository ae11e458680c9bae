"""``brevitas-amed compare RECIPE``: every method on one recipe, one plot, one table."""

from __future__ import annotations

import argparse
import logging


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="run AMED and its peers on one recipe and compare them",
                       description="AMED, TPE, NSGA-II, OHQ (sensitivity + integer programming), differentiable "
                                   "precision and uniform bits, fine-tuned and evaluated alike; writes compare.png, "
                                   "compare.md and compare.json in the recipe's output_dir.")
    p.add_argument("recipe", nargs="?", default=None, help="recipe YAML (default: the built-in digits recipe)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field (repeatable)")
    p.add_argument("--methods", default="amed,tpe,nsga2,ohq,differentiable,uniform",
                   help="comma-separated subset of amed,tpe,nsga2,random,ohq,differentiable,uniform")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brevitas_amed.job.compare import compare_markdown, parse_methods, run_compare
    from brevitas_amed.job.recipe import load_recipe

    methods = parse_methods(args.methods)
    recipe = load_recipe(args.recipe, args.overrides)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    result = run_compare(recipe, methods)
    print(compare_markdown(result).split("![compare]")[0].rstrip())
    print(f"plot: {recipe.output_dir}/compare.png")
    return 0
