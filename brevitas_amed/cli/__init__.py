"""The ``brevitas-amed`` command line.

Each sub-command lives in ``brevitas_amed/cli/<name>.py`` with two functions:
``add_parser(subparsers)`` and ``run(args) -> int``. Errors become one line on stderr and exit
code 2; ``--traceback`` shows the full trace for bug reports.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

COMMANDS = ("recipe", "compare", "report", "latency", "backends", "finn")


def _quiet_dependencies() -> None:
    """Silence import-time chatter of the CUDA torch build on CPU machines and of Brevitas."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"brevitas\..*")
    warnings.filterwarnings("ignore", message=".*treespec.*")


def _load(name: str):
    return importlib.import_module(f"brevitas_amed.cli.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brevitas-amed",
        description="Automatic mixed-precision quantization for edge devices (AMED) on Brevitas.",
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        _load(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_dependencies()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("brevitas-amed: interrupted; finished work is saved, run the same command again to resume",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`brevitas-amed backends | head`): not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI's contract is one line, exit 2
        if args.traceback:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"brevitas-amed: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
