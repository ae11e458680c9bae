"""Fake-quant cost against float: ResNet-18 at 32x32, batch 64, forward and forward+backward.

Float and quantized runs are interleaved in one process so machine noise hits both alike; the
figure reported is the ratio of medians. Also times a run-time bit change.

    python benchmarks/quant_overhead.py [--batch 64] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torchvision

from brevitas_amed.quant import calibrate, quantize

warnings.filterwarnings("ignore")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    qmodel = quantize(model)
    x = torch.randn(args.batch, 3, args.size, args.size)
    calibrate(qmodel, [x], train_mode=True)
    qmodel.set_uniform(4)

    def forward(m):
        m.eval()
        with torch.no_grad():
            m(x)

    def forward_backward(m):
        m.train()
        m.zero_grad()
        m(x).sum().backward()

    results = {}
    for label, fn in (("forward", forward), ("forward+backward", forward_backward)):
        fn(model), fn(qmodel)  # warm-up
        f_times, q_times = [], []
        for _ in range(args.repeats):
            f_times.append(timed(lambda: fn(model)))
            q_times.append(timed(lambda: fn(qmodel)))
        results[label] = (statistics.median(f_times), statistics.median(q_times))

    space = qmodel.search_space()
    allocation = {k: (4 if i % 2 else 8) for i, k in enumerate(space)}
    n = 200
    set_time = timed(lambda: [qmodel.set_knob_bits(allocation) for _ in range(n)]) / n

    print(f"ResNet-18, input {args.size}x{args.size}, batch {args.batch}, {args.threads} threads, "
          f"median of {args.repeats} interleaved runs, torch {torch.__version__}")
    print(f"{'pass':<18}{'float ms':>10}{'fake-quant ms':>15}{'ratio':>8}")
    for label, (f, q) in results.items():
        print(f"{label:<18}{f * 1e3:>10.1f}{q * 1e3:>15.1f}{q / f:>7.2f}x")
    print(f"set all {len(space)} searchable knobs: {set_time * 1e6:.0f} us")


if __name__ == "__main__":
    main()
