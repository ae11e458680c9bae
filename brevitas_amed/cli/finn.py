"""``brevitas-amed finn OUTDIR``: FINN's dataflow flow on a finished job's exported models.

FINN lives in its own virtual environment (``brevitas-amed finn --setup`` builds it; see
``brevitas_amed/finn/env.py``). Writes ``OUTDIR/finn.json``, ``OUTDIR/finn.md`` and FINN's reports
under ``OUTDIR/finn/<model>/``; exits 2 when a model fails FINN's flow or its weight datatypes
differ from the chosen bits.
"""

from __future__ import annotations

import argparse

from brevitas_amed.cli.recipe import positive


def add_parser(sub) -> None:
    p = sub.add_parser(
        "finn", help="FINN estimates (throughput, LUT/BRAM/DSP) for a finished job's exported models",
        description="Run FINN's dataflow flow (QONNX -> FINN -> streamline -> hardware layers -> folding -> "
                    "estimate reports, no Vivado) on every exported model of a finished job, check that "
                    "FINN's weight datatypes equal the chosen bits, and write finn.json and finn.md.")
    p.add_argument("output_dir", nargs="?", help="the recipe's output_dir (a finished job)")
    p.add_argument("--setup", action="store_true", help="build (or complete) FINN's environment first")
    p.add_argument("--finn-venv", help="FINN's virtual environment (default $BREVITAS_AMED_FINN_VENV or "
                                       ".finn-venv next to the project)")
    p.add_argument("--models", help="comma-separated labels (default: every exported model)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-fps", type=positive, default=None,
                        help="fold each model for this throughput, frames/s (default 10000)")
    target.add_argument("--lut-budget", type=positive,
                        help="fold each model for the most frames/s within this many LUTs")
    p.add_argument("--fpga-part", default="xc7z020clg400-1", help="FPGA part (default xc7z020clg400-1)")
    p.add_argument("--clock-ns", type=positive_number, default=10.0, help="clock period in ns (default 10)")
    p.add_argument("--timeout", type=positive_number, default=3600, help="seconds one model may take (default 3600)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brevitas_amed.finn import FinnSettings, finn_python, run_finn, setup_venv

    if args.setup:
        python = setup_venv(args.finn_venv)
        print(f"FINN environment ready: {python}")
        if not args.output_dir:
            return 0
    if not args.output_dir:
        raise ValueError("give the job's output_dir (or --setup to build FINN's environment)")
    python = finn_python(args.finn_venv)
    # a LUT budget replaces the throughput target: the record then names no target it did not use
    target_fps = None if args.lut_budget else (args.target_fps or 10_000)
    settings = FinnSettings(fpga_part=args.fpga_part, clk_ns=args.clock_ns, target_fps=target_fps,
                            lut_budget=args.lut_budget)
    labels = [s.strip() for s in args.models.split(",")] if args.models else None
    run_finn(args.output_dir, python, settings, labels=labels, timeout=args.timeout)
    print(f"{args.output_dir}/finn.md")
    return 0


def positive_number(text: str) -> float:
    """An argparse type: a number > 0 (an int when written as one)."""
    try:
        value = int(text) if text.strip().lstrip("+").isdigit() else float(text)
    except ValueError:
        value = 0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value
