"""``brevitas-amed latency``: simulated latency of a network at a bit allocation, layer by layer."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

import hw_backends
from hw_backends import LatencyReport, Workload

SCALESIM_ONLY = ("cache", "workers", "timeout")


def add_parser(subparsers) -> None:
    """Register the ``latency`` sub-command."""
    p = subparsers.add_parser(
        "latency", help="latency of a network on a hardware profile at given bits",
        description="Simulate a network's latency at a bit allocation and print a per-layer table.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="torchvision model name (built with weights=None), e.g. resnet18")
    source.add_argument("--workload", type=Path, help="workload JSON (Workload.to_dict format); needs no torch")
    p.add_argument("--input-size", type=int, default=224, help="input height and width for --model (default 224)")
    p.add_argument("--profile", default="scalesim", help="shipped profile name or profile YAML path (default scalesim)")
    p.add_argument("--backend", default="analytic",
                   help="latency backend: analytic (closed form, instant) or scalesim (real SCALE-Sim, cached)")
    p.add_argument("--bits", default="8",
                   help="'B' (weights and activations), 'W,A', or a YAML/JSON file {layer: [w, a]} (default 8)")
    p.add_argument("--precompute", metavar="BITS",
                   help="fill the cache for every (w, a) in BITS x BITS first, e.g. 2,3,4,8 (progress bar)")
    p.add_argument("--cache", help="scalesim: latency cache database URL (default $BREVITAS_AMED_CACHE or ~/.cache)")
    p.add_argument("--workers", type=int, help="scalesim: simulations run at once (default: CPU count)")
    p.add_argument("--timeout", type=float, help="scalesim: seconds one layer may simulate (default 3600)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the workload and backend, optionally precompute, then print the report.

    Args:
        args: Parsed arguments.

    Returns:
        0.

    Raises:
        ValueError: On a bad model name, bits, input size or option combination.
        HWBackendError: On an unknown backend, a bad profile or a failed simulation.
    """
    workload = load_workload(args)
    backend = hw_backends.get(args.backend, profile=args.profile, **backend_options(args))
    if args.precompute:
        widths = parse_widths(args.precompute)
        start = time.perf_counter()
        backend.layer_table(workload, widths, widths, progress=True)
        print(f"precomputed {len(workload)} layers x {len(widths) ** 2} bit pairs "
              f"in {time.perf_counter() - start:.1f} s")
    bits = parse_bits(args.bits, workload)
    report = backend.latency(workload, bits)
    print(json.dumps(report_dict(report), indent=2) if args.json else format_report(workload, report, bits))
    return 0


def backend_options(args: argparse.Namespace) -> dict:
    """Keyword arguments for the backend.

    Raises:
        ValueError: If a scalesim-only option is given with another backend.
    """
    given = {name: getattr(args, name) for name in SCALESIM_ONLY if getattr(args, name) is not None}
    if given and args.backend != "scalesim":
        raise ValueError(f"--{next(iter(given))} only applies to --backend scalesim")
    return {{"timeout": "timeout_s"}.get(name, name): value for name, value in given.items()}


def load_workload(args: argparse.Namespace) -> Workload:
    """The workload from ``--workload`` JSON, or traced from a torchvision ``--model``."""
    if args.workload is not None:
        try:
            return Workload.from_dict(json.loads(args.workload.read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read workload {args.workload}: {exc}; expected Workload.to_dict() JSON") from exc
    if args.input_size < 32:
        raise ValueError(f"--input-size must be at least 32 for torchvision models, got {args.input_size}")
    import torchvision

    from brevitas_amed.quant import build_workload

    try:
        model = torchvision.models.get_model(args.model, weights=None)
    except ValueError:
        known = ", ".join(m for m in torchvision.models.list_models(torchvision.models)
                          if m.startswith(("resnet", "mobilenet", "vgg", "efficientnet")))
        raise ValueError(f"unknown torchvision model {args.model!r}; try one of {known}") from None
    return build_workload(model, (3, args.input_size, args.input_size), name=args.model)


def parse_widths(text: str) -> list[int]:
    """``"2,3,4,8"`` -> ``[2, 3, 4, 8]``."""
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"bit widths must be comma-separated ints like 2,3,4,8, got {text!r}") from None


def parse_bits(text: str, workload: Workload) -> dict[str, tuple[int, int]]:
    """Bits for every layer from ``"B"``, ``"W,A"`` or a YAML/JSON file ``{layer: [w, a] or b}``."""
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        try:
            data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read bits file {path}: {exc}".replace("\n", " ")) from exc
        if not isinstance(data, dict):
            raise ValueError(f"bits file {path} must map layer names to [weight_bits, act_bits]")
        return {name: (value, value) if isinstance(value, int) else tuple(value) for name, value in data.items()}
    try:
        parts = [int(part) for part in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise ValueError(f"--bits must be 'B', 'W,A' or an existing bits file, got {text!r}")
    weight_bits, act_bits = parts if len(parts) == 2 else parts * 2
    return workload.uniform_bits(weight_bits, act_bits)


def format_report(workload: Workload, report: LatencyReport, bits: dict[str, tuple[int, int]]) -> str:
    """A per-layer table with totals."""
    lines = [f"{workload.name} on {report.profile} ({report.backend} backend)",
             f"{'layer':<28} {'shape':<26} {'w/a':>5} {'cycles':>12} {'stall':>10} {'util':>6} {'share':>6}"]
    for layer in workload.layers:
        cost = report.per_layer[layer.name]
        shape = (f"{layer.in_channels}->{layer.out_channels} {layer.kernel_h}x{layer.kernel_w}/{layer.stride_h}"
                 f"{' g' + str(layer.groups) if layer.groups > 1 else ''} @{layer.in_h}x{layer.in_w}")
        pair = "{}/{}".format(*bits[layer.name])
        lines.append(f"{layer.name:<28} {shape:<26} {pair:>5} {cost.cycles:>12,} {cost.stall_cycles:>10,} "
                     f"{cost.utilization:>6.1%} {cost.cycles / report.cycles:>6.1%}")
    lines.append(f"{'total':<28} {'':<26} {'':>5} {report.cycles:>12,} {report.stall_cycles:>10,}")
    lines.append(f"latency {report.seconds * 1e3:.3f} ms at the profile's clock")
    return "\n".join(lines)


def report_dict(report: LatencyReport) -> dict:
    """The report as plain JSON-able data."""
    return {"backend": report.backend, "profile": report.profile, "cycles": report.cycles,
            "seconds": report.seconds,
            "per_layer": {name: {"cycles": c.cycles, "stall_cycles": c.stall_cycles,
                                 "utilization": c.utilization, "mapping_efficiency": c.mapping_efficiency}
                          for name, c in report.per_layer.items()}}
