"""Cold and warm cost of ResNet-18 latency tables, and the analytic model against SCALE-Sim.

For each profile: the time to fill a ResNet-18 latency table over weight and activation bits
{2,3,4,8} with the real SCALE-Sim from an empty cache (cold), the same table from the database
in a new process-like instance and from memory (warm), the cost of one allocation once warm,
and the analytic backend's time and error on every table entry against SCALE-Sim.

By default the network runs at 56x56 input (cold SCALE-Sim at 224x224 costs many minutes per
profile on two cores); ``--full`` runs 224x224, ``--input-size`` any other size. The default
profiles have ideal bandwidth; for finite-bandwidth profiles (``lowmem``) use
``benchmarks/latency_fidelity.py``: there SCALE-Sim re-fetches whole weight streams and needs
hours and gigabytes on ResNet-18's larger layers, and the tables below need every bit pair above
the requested ones (the monotone envelope), not 16.

    PYTHONPATH=. python benchmarks/latency.py                 # 56x56, scalesim and eyeriss
    PYTHONPATH=. python benchmarks/latency.py --full          # 224x224
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torchvision

import hw_backends
from brevitas_amed.quant import build_workload
from hw_backends.cache import LatencyCache


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="224x224 input (same as --input-size 224)")
    p.add_argument("--input-size", type=int, default=56, help="input height and width (default 56)")
    p.add_argument("--profiles", default="scalesim,eyeriss")
    p.add_argument("--bits", default="2,3,4,8")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--allocations", type=int, default=2000, help="random allocations timed once warm")
    return p.parse_args()


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def per_allocation_seconds(backend, workload, widths, count: int) -> float:
    rng = random.Random(0)
    allocations = [{name: (rng.choice(widths), rng.choice(widths)) for name in workload.names}
                   for _ in range(count)]
    _, seconds = timed(lambda: [backend.latency(workload, bits) for bits in allocations])
    return seconds / count


def bench_profile(profile: str, workload, widths, args, cache_url: str) -> None:
    cache = LatencyCache(cache_url)
    before = len(cache)
    sim = hw_backends.get("scalesim", profile=profile, cache=cache, workers=args.workers)
    table, cold = timed(lambda: sim.layer_table(workload, widths, widths, progress=True))
    simulations = len(cache) - before
    fresh = hw_backends.get("scalesim", profile=profile, cache=cache_url, timeout_s=1e-9)
    _, warm_db = timed(lambda: fresh.layer_table(workload, widths, widths))
    _, warm_mem = timed(lambda: sim.layer_table(workload, widths, widths))
    sim_alloc = per_allocation_seconds(sim, workload, widths, args.allocations)

    analytic = hw_backends.get("analytic", profile=profile)
    predicted, analytic_s = timed(lambda: analytic.layer_table(workload, widths, widths))
    analytic_alloc = per_allocation_seconds(analytic, workload, widths, args.allocations)

    errors = [abs(predicted[n][c].cycles - table[n][c].cycles) / table[n][c].cycles
              for n in table for c in table[n]]
    exact = sum(e == 0 for e in errors)
    totals = {c: (sum(predicted[n][c].cycles for n in table), sum(table[n][c].cycles for n in table))
              for c in [(8, 8), (4, 4), (2, 2)] if c in table[workload.names[0]]}
    entries = len(errors)
    print(f"\n== {profile}: {hw_backends.load_profile(profile).summary()}")
    print(f"SCALE-Sim cold table   {cold:9.1f} s  ({entries} entries, {simulations} distinct simulations, "
          f"{cold / max(simulations, 1):.2f} s each)")
    print(f"SCALE-Sim warm, DB     {warm_db * 1e3:9.2f} ms  (new instance, cold/warm = {cold / warm_db:,.0f}x)")
    print(f"SCALE-Sim warm, memory {warm_mem * 1e3:9.3f} ms")
    print(f"warm allocation        {sim_alloc * 1e6:9.1f} us  (scalesim), {analytic_alloc * 1e6:.1f} us (analytic)")
    print(f"analytic table         {analytic_s * 1e3:9.2f} ms  (SCALE-Sim cold / analytic = {cold / analytic_s:,.0f}x)")
    print(f"analytic vs SCALE-Sim  exact on {exact}/{entries} entries; relative error mean "
          f"{statistics.mean(errors):.2%}, max {max(errors):.2%}")
    for combo, (a, s) in totals.items():
        print(f"  network w{combo[0]}/a{combo[1]}: SCALE-Sim {s:,} cycles, analytic {a:,} ({(a - s) / s:+.2%})")


def main() -> None:
    args = parse_args()
    size = 224 if args.full else args.input_size
    widths = [int(b) for b in args.bits.split(",")]
    workload = build_workload(torchvision.models.resnet18(), (3, size, size), name=f"resnet18@{size}")
    distinct = len({layer.shape_key() for layer in workload})
    print(f"{workload.name}: {len(workload)} layers, {distinct} distinct shapes; bits {widths} for "
          f"weights and activations ({len(widths) ** 2} pairs)")
    with tempfile.TemporaryDirectory() as folder:
        cache_url = f"sqlite:///{Path(folder) / 'latency.db'}"
        for profile in args.profiles.split(","):
            bench_profile(profile, workload, widths, args, cache_url)


if __name__ == "__main__":
    main()
