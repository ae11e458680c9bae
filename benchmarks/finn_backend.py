"""The bits the search picks for an FPGA dataflow target (``finn`` backend) against those it picks
for the ``scalesim`` profile, on the digits recipe.

Runs the built-in digits recipe twice with the same seed, once per hardware target, fine-tuning
the best searched candidate only (``finetune.top_k=1``, no uniform baselines), then costs both
chosen allocations on both targets: SCALE-Sim cycles on the ``scalesim`` profile and FINN's LUT
estimate on ``zynq7020`` (xc7z020, 100 MHz, every layer folded for 10,000 frames/s). Prints a
markdown table: per-layer bits side by side, then the totals.

    PYTHONPATH=. python benchmarks/finn_backend.py [--set key=value ...]   # needs .finn-venv
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import hw_backends
from brevitas_amed.job.recipe import load_recipe
from brevitas_amed.job.run import run
from brevitas_amed.quant import build_workload
from brevitas_amed.training.models import build_model

TARGETS = {"scalesim": ("scalesim", "scalesim"), "finn": ("finn", "zynq7020")}


def searched(target: str, tmp: Path, overrides: list[str]) -> tuple[dict, float, float]:
    """The best searched model's bits and test accuracy, and the job's wall time."""
    backend, profile = TARGETS[target]
    recipe = load_recipe(None, [f"output_dir={tmp / target}", f"hardware.cache=sqlite:///{tmp / 'cache.db'}",
                                f"hardware.backend={backend}", f"hardware.profile={profile}",
                                "finetune.top_k=1", "finetune.baselines=[]", *overrides])
    started = time.time()
    summary = run(recipe)
    best = next(f for f in summary.finals if f.label == summary.best)
    bits = {layer: (w or 8, a or 8) for layer, (w, a) in best.bits.items()}  # float layers count as 8-bit
    return bits, best.test_accuracy, time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        picks = {target: searched(target, tmp, args.overrides) for target in TARGETS}
        workload = build_workload(build_model("digits_cnn", 10, in_channels=1), (1, 8, 8), name="digits_cnn")
        backends = {target: hw_backends.get(name, profile=profile, cache=f"sqlite:///{tmp / 'cache.db'}")
                    for target, (name, profile) in TARGETS.items()}
        costs = {(target, pick): backends[target].latency(workload, picks[pick][0])
                 for target in TARGETS for pick in TARGETS}
        uniform8 = {target: backends[target].latency(workload, workload.uniform_bits()).cycles for target in TARGETS}
    print("| layer | shape | bits (w/a) searched for `scalesim` | bits (w/a) searched for `finn` |")
    print("|---|---|---|---|")
    for layer in workload.layers:
        shape = (f"{layer.in_channels}->{layer.out_channels}, {layer.kernel_h}x{layer.kernel_w}, "
                 f"{layer.in_h}x{layer.in_w}")
        chosen = ["{}/{}".format(*picks[pick][0][layer.name]) for pick in TARGETS]
        print(f"| {layer.name} | {shape} | " + " | ".join(chosen) + " |")
    print(f"| test accuracy | | {100 * picks['scalesim'][1]:.2f}% | {100 * picks['finn'][1]:.2f}% |")
    units = {"scalesim": "SCALE-Sim cycles (`scalesim` profile)", "finn": "FINN LUT (`zynq7020`, 10,000 frames/s)"}
    for target, unit in units.items():
        cells = [f"{costs[(target, pick)].cycles:,} ({costs[(target, pick)].cycles / uniform8[target]:.2f}x "
                 "uniform 8-bit)" for pick in TARGETS]
        print(f"| {unit} | uniform 8-bit: {uniform8[target]:,} | " + " | ".join(cells) + " |")
    print(f"| job wall time | | {picks['scalesim'][2]:.0f} s | {picks['finn'][2]:.0f} s |")


if __name__ == "__main__":
    main()
