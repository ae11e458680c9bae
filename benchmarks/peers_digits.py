"""OHQ and differentiable precision on the digits CNN, plus the integer program's speed on ResNet-18.

Digits: DigitsCNN trained in float (Adam, ``--float-epochs``), quantized with the default policy
(bits 2..8 per knob, first and last layers fixed at 8), calibrated; then each strategy's
``propose`` under the analytic SCALE-Sim model (stock 32x32 profile, Bit Fusion precision). Every
proposed allocation is reported with its cycles, weight size, validation accuracy at the proposed
bits before any fine-tuning, and test accuracy after ``--finetune-epochs`` of quantization-aware
training (Adam 1e-3, the pipeline's job, done here only to make the points comparable). Uniform
8- and 4-bit are the reference rows. Strategy time is wall time of ``propose``.

ResNet-18: the OHQ integer program (bits 2..8 for every weight and activation knob, first and
last layers fixed at 8, 224x224 workload) with sensitivities ``4 ** (2 - b)`` scaled per knob:
time to build the program and to trace a 9-point front.

    python benchmarks/peers_digits.py [--threads 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
from torch.utils.data import DataLoader

import hw_backends
from brevitas_amed.training.data import digits
from brevitas_amed.training.models import build_model
from brevitas_amed.quant import LatencyTable, QuantPolicy, calibrate, layer_bits, quantize
from brevitas_amed.strategies import StrategyContext, differentiable, ohq

warnings.filterwarnings("ignore")


def accuracy(model, dataset) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=512):
            correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(dataset)


def train(model, loader, epochs: int, lr: float) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()


def digits_rows(args) -> None:
    splits = digits(seed=args.seed)
    torch.manual_seed(args.seed)
    float_model = build_model("digits_cnn", 10, in_channels=1)
    loader = DataLoader(splits.train, batch_size=64, shuffle=True)
    train(float_model, loader, args.float_epochs, 1e-2)
    float_model.eval()
    qmodel = quantize(float_model, QuantPolicy())
    calibrate(qmodel, loader, max_batches=8)
    backend = hw_backends.get("analytic", profile="scalesim")
    workload = qmodel.workload((1, 8, 8))
    ctx = StrategyContext(qmodel=qmodel, float_model=float_model, latency=LatencyTable(qmodel, workload, backend),
                          train_loader=loader, calib_batches=4, seed=args.seed)
    space = qmodel.search_space()
    rows = [("uniform 8", {k: 8 for k in space}), ("uniform 4", {k: 4 for k in space})]
    for name, strategy, n_points in (("ohq", ohq, 5), ("differentiable", differentiable, 3)):
        start = time.perf_counter()
        points = strategy.propose(ctx, n_points=n_points)
        print(f"{name}: propose took {time.perf_counter() - start:.1f} s for {len(points)} points")
        rows += [(name, p) for p in points]
    reference = backend.latency(workload, layer_bits(qmodel, rows[0][1])).cycles
    print(f"float test accuracy {accuracy(float_model, splits.test):.3f}")
    print(f"{'strategy':<15}{'cycles':>8}{'vs 8b':>7}{'size kbit':>10}{'val noFT':>9}{'test FT':>8}  bits (w/a per layer)")
    for name, allocation in rows:
        cycles = backend.latency(workload, layer_bits(qmodel, allocation)).cycles
        tuned = copy.deepcopy(qmodel)
        tuned.set_knob_bits(allocation)
        before = accuracy(tuned, splits.val)
        torch.manual_seed(args.seed)
        train(tuned, loader, args.finetune_epochs, 1e-3)
        bits = " ".join(f"{w}/{a}" for w, a in layer_bits(qmodel, allocation).values())
        print(f"{name:<15}{cycles:>8}{cycles / reference:>7.2f}{qmodel.weight_size_bits(allocation) / 1e3:>10.1f}"
              f"{before:>9.3f}{accuracy(tuned, splits.test):>8.3f}  {bits}")


def resnet18_ilp() -> None:
    import torchvision

    qmodel = quantize(torchvision.models.resnet18(num_classes=10), QuantPolicy())
    workload = qmodel.workload((3, 224, 224))
    backend = hw_backends.get("analytic", profile="scalesim")
    space = qmodel.search_space()
    sensitivity = {k: {b: (1 + i % 5) * 4.0 ** (2 - b) for b in choices} for i, (k, choices) in enumerate(space.items())}
    start = time.perf_counter()
    latency = LatencyTable(qmodel, workload, backend)
    program = ohq.BitProgram.build(qmodel, latency)
    built = time.perf_counter() - start
    start = time.perf_counter()
    points = ohq.front(sensitivity, qmodel, latency, n_points=9)
    print(f"resnet18: {len(workload)} layers, {len(space)} knobs, {len(program.variables)} binary and "
          f"{len(program.latency) - len(program.variables)} pair variables; build {built:.2f} s, "
          f"9-budget front {time.perf_counter() - start:.2f} s ({len(points)} distinct points)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--float-epochs", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    resnet18_ilp()
    digits_rows(args)


if __name__ == "__main__":
    main()
