"""``brevitas-amed report OUTDIR``: redraw the plots and markdown of a finished job."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="redraw the report of a finished job")
    p.add_argument("output_dir", help="the recipe's output_dir")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brevitas_amed.job.report import write_report

    for path in write_report(args.output_dir):
        print(path)
    return 0
