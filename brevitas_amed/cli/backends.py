"""``brevitas-amed backends``: the registered latency backends and their hardware profiles."""

from __future__ import annotations

import argparse
import json

import hw_backends


def add_parser(subparsers) -> None:
    """Register the ``backends`` sub-command."""
    p = subparsers.add_parser("backends", help="list latency backends and their hardware profiles",
                              description="List the registered latency backends (built-in and plugins) "
                                          "and the hardware profiles each accepts.")
    p.add_argument("--json", action="store_true", help="print {backend: [profile, ...]} as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print every backend with its profiles.

    Args:
        args: Parsed arguments (``json``).

    Returns:
        0.

    Raises:
        HWBackendError: If a plugin backend fails to load.
    """
    listing = hw_backends.available()
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    shipped = set(hw_backends.shipped_profiles())
    for backend, profiles in listing.items():
        print(f"{backend}:")
        for name in profiles:
            summary = hw_backends.load_profile(name).summary() if name in shipped else ""
            print(f"  {name:<10} {summary}")
    return 0
