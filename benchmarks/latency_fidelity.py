"""The analytic backend against real SCALE-Sim, per profile: every distinct layer of ResNet-18 and
MobileNetV2 at a small input, at several (weight, activation) bit pairs.

Errors are on SCALE-Sim's Total Cycles of each simulated convolution (the raw number both
backends then scale by ``groups``, add the preload to and take the monotone envelope of). SCALE-Sim
results are read through the persistent latency cache, so a second run costs seconds.

In finite bandwidth SCALE-Sim re-fetches a read buffer's whole stream whenever a demand falls
behind its window (see ``hw_backends/scalesim_memory.py``); on layers whose weights exceed the
SRAM many times this takes millions of cycles, and SCALE-Sim needs hours and gigabytes for its
traces. ``--max-cycles`` skips those entries (the analytic estimate decides; the count is printed).

    PYTHONPATH=. python benchmarks/latency_fidelity.py                       # lowmem, 32x32
    PYTHONPATH=. python benchmarks/latency_fidelity.py --profiles lowmem,scalesim,eyeriss
"""

from __future__ import annotations

import argparse
import statistics
import time

import torchvision

import hw_backends
from brevitas_amed.quant import build_workload
from hw_backends.analytic import estimate
from hw_backends.precision import simulation_job

NETWORKS = ("resnet18", "mobilenet_v2")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input-size", type=int, default=32, help="input height and width (default 32)")
    p.add_argument("--profiles", default="lowmem")
    p.add_argument("--pairs", default="8/8,6/6,4/4,3/3,2/2,8/2,2/8", help="w/a bit pairs")
    p.add_argument("--max-cycles", type=int, default=400_000,
                   help="skip entries the analytic model puts above this many cycles (SCALE-Sim too slow)")
    p.add_argument("--cache", default=None, help="latency cache URL (default: the user's cache)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--worst", type=int, default=5, help="list this many worst entries per profile")
    return p.parse_args()


def distinct_layers(size: int) -> list[hw_backends.Layer]:
    layers: dict[tuple, hw_backends.Layer] = {}
    for net in NETWORKS:
        workload = build_workload(getattr(torchvision.models, net)(), (3, size, size), name=net)
        for layer in workload:
            layers.setdefault(layer.shape_key(), layer)
    return list(layers.values())


def compare(profile_name: str, layers, pairs, args) -> dict:
    profile = hw_backends.load_profile(profile_name)
    entries, skipped = {}, 0
    for layer in layers:
        for pair in pairs:
            spec = simulation_job(layer, profile, *pair).spec
            predicted = estimate(spec, profile)
            if predicted.cycles > args.max_cycles:
                skipped += 1
                continue
            entries[(layer.name, pair)] = (spec, predicted)
    sim = hw_backends.get("scalesim", profile=profile, cache=args.cache, workers=args.workers)
    labels = {spec: f"{name} (w{pair[0]}/a{pair[1]})" for (name, pair), (spec, _p) in entries.items()}
    start = time.perf_counter()
    real = sim.spec_results(labels, progress=True)
    seconds = time.perf_counter() - start
    rows = []
    for (name, pair), (spec, predicted) in entries.items():
        truth = real[spec].cycles
        rows.append((abs(predicted.cycles - truth) / truth, name, pair, truth, predicted.cycles))
    rows.sort(reverse=True)
    errors = [row[0] for row in rows]
    return {"profile": profile_name, "summary": profile.summary(), "entries": len(rows), "skipped": skipped,
            "exact": sum(e == 0 for e in errors), "mean": statistics.mean(errors), "max": max(errors),
            "within5": sum(e <= 0.05 for e in errors), "worst": rows[:args.worst], "seconds": seconds,
            "total": (sum(r[4] for r in rows), sum(r[3] for r in rows))}


def main() -> None:
    args = parse_args()
    pairs = [tuple(int(b) for b in pair.split("/")) for pair in args.pairs.split(",")]
    layers = distinct_layers(args.input_size)
    print(f"{len(layers)} distinct layers of {', '.join(NETWORKS)} at {args.input_size}x{args.input_size}; "
          f"bit pairs {args.pairs}")
    results = [compare(name, layers, pairs, args) for name in args.profiles.split(",")]
    print("\n| profile | entries (skipped) | exact | within 5% | mean abs error | max error | summed cycles, analytic / SCALE-Sim |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        analytic, real = r["total"]
        print(f"| `{r['profile']}` | {r['entries']} ({r['skipped']}) | {r['exact']} | {r['within5']} | "
              f"{r['mean']:.2%} | {r['max']:.2%} | {analytic / real:.4f} |")
    for r in results:
        print(f"\n{r['profile']}: {r['summary']}; SCALE-Sim (cache read or run) {r['seconds']:.1f} s; worst entries:")
        for error, name, pair, truth, predicted in r["worst"]:
            print(f"  {name:28s} w{pair[0]}/a{pair[1]}  SCALE-Sim {truth:>10,}  analytic {predicted:>10,}  ({error:.2%})")


if __name__ == "__main__":
    main()
