"""Model zoo: every torchvision classification CNN through quantize, calibrate, a mixed-bit forward,
the workload, an analytic-backend latency and a QONNX export verified by qonnx execution.

The models come from torchvision itself (``list_models(module=torchvision.models)``) by a rule:
no attention models (ViT, Swin, MaxViT) nor ConvNeXt, and none above 10 GFLOPs at 224x224
according to torchvision's own weight metadata (the largest VGG, RegNet, EfficientNet, ResNet and
ResNeXt variants). Networks have random weights and see a few train-mode batches first, so their
BatchNorm statistics are sane (see FIELD_NOTES); the input is ``--size`` pixels, raised to a
model's minimum and, where an adaptive pool has an output larger than 1x1 (AlexNet, VGG), to its
224-pixel crop. For the families added in issue 12 it also compares the 8-bit model's error
against the float model with stock Brevitas graph quantization (``preprocess_for_quantize`` +
``quantize`` with their defaults, calibrated the same way).

    PYTHONPATH=. python benchmarks/zoo.py [--models resnet18,mobilenet_v3_small] [--size 64]
"""

from __future__ import annotations

import argparse
import copy
import random
import re
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torchvision

import hw_backends
from brevitas_amed.quant import calibrate, export_qonnx, layer_bits, quantize, verify_qonnx

warnings.filterwarnings("ignore")

EXCLUDED = re.compile(r"^(vit|swin|maxvit|convnext)_")  # attention models and ConvNeXt
MAX_GFLOPS = 10.0
NEW_FAMILIES = ("mobilenet_v3", "efficientnet", "regnet_y", "shufflenet")


def zoo_models() -> list[str]:
    """The torchvision classification CNNs the rule keeps, in torchvision's order."""
    names = []
    for name in torchvision.models.list_models(module=torchvision.models):
        meta = torchvision.models.get_model_weights(name).DEFAULT.meta
        if not EXCLUDED.match(name) and meta["_ops"] <= MAX_GFLOPS:
            names.append(name)
    return names


def build(name: str, size: int, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A random float model in eval mode after a few train-mode batches, a calibration batch and a test batch."""
    torch.manual_seed(seed)
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=10, aux_logits=False)
    except TypeError:  # only GoogLeNet and Inception have auxiliary heads
        model = torchvision.models.get_model(name, weights=None, num_classes=10)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    size = max(size, *weights.meta.get("min_size", (1, 1)))
    pools = [m.output_size for m in model.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
    if any(p not in (1, (1, 1)) for p in pools):
        # ONNX exports an adaptive pool only when its output divides its input (AlexNet, VGG)
        size = max(size, *weights.transforms().crop_size)
    data, test = torch.randn(8, 3, size, size), torch.randn(16, 3, size, size)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, size, size))
    return model.eval(), data, test


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).abs().mean() / ref.abs().mean())


def stock_error(model: torch.nn.Module, data: torch.Tensor, test: torch.Tensor) -> float:
    """8-bit error of stock Brevitas graph quantization (chunk run as a function, see quant/convert.py)."""
    from brevitas.graph.calibrate import calibration_mode
    from brevitas.graph.quantize import preprocess_for_quantize
    from brevitas.graph.quantize import quantize as brevitas_quantize

    from brevitas_amed.quant.convert import methods_to_functions

    graph = preprocess_for_quantize(copy.deepcopy(model))
    methods_to_functions(graph)
    qgraph = brevitas_quantize(graph)
    # the same repair as brevitas_amed.quant.calibrate: without it a concatenation's shared
    # quantizer stays an observer after calibration and stock ShuffleNet/DenseNet look better
    observers = {m: m.observer_only for m in qgraph.modules() if hasattr(m, "observer_only")}
    with torch.no_grad():
        with calibration_mode(qgraph):
            qgraph(data)
        for module, flag in observers.items():
            module.observer_only = flag
        qgraph.eval()
        out = qgraph(test)
        return relative_error(getattr(out, "value", out), model(test))


def check(name: str, size: int, export: bool, workdir: Path) -> dict:
    """Run one model through every step; the first failing step ends it."""
    row = {"model": name, "knobs": "", "layers": "", "err8": "", "stock": "", "result": "pass"}
    start = time.perf_counter()
    step = "build"
    try:
        model, data, test = build(name, size)
        step = "quantize"
        qmodel = quantize(model)
        row["knobs"] = f"{len(qmodel.search_space())}/{len(qmodel.knobs)}"
        row["layers"] = len(qmodel.layers)
        step = "calibrate"
        calibrate(qmodel, [data], train_mode=False)
        qmodel.eval()
        step = "forward"
        with torch.no_grad():
            ref, out8 = model(test), qmodel(test)
            row["err8"] = relative_error(out8, ref)
            rng = random.Random(0)
            qmodel.set_knob_bits({k: rng.choice(c) for k, c in qmodel.search_space().items()})
            mixed = qmodel(test)
        if not torch.isfinite(mixed).all() or torch.equal(mixed, out8):
            raise RuntimeError("mixed-bit output is not finite or equals the 8-bit output")
        step = "workload"
        workload = qmodel.workload(tuple(test.shape[1:]), name=name)
        report = hw_backends.get("analytic").latency(workload, layer_bits(qmodel))
        if report.cycles <= 0:
            raise RuntimeError("no latency")
        if export:
            step = "export"
            path = export_qonnx(qmodel, test[:1], workdir / f"{name}.onnx")
            step = "verify"
            result = verify_qonnx(qmodel, path, test[:1])
            if not result.passed:
                raise RuntimeError(f"qonnx output differs by {result.max_abs_diff:.3g} (step {result.output_step})")
        if name.startswith(NEW_FAMILIES):
            step = "stock"
            row["stock"] = row["err8"] / stock_error(model, data, test)
    except Exception as exc:  # the table reports any failure
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        row["result"] = f"FAIL at {step}: {type(exc).__name__}: {first[:120]}"
    row["seconds"] = time.perf_counter() - start
    return row


def fmt(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated subset (default: the whole zoo)")
    parser.add_argument("--size", type=int, default=64, help="input size (raised to a model's minimum)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-export", action="store_true", help="skip QONNX export and verification")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.models.split(",") if args.models else zoo_models()
    print(f"{len(names)} models, input {args.size}x{args.size}")
    print(f"{'model':22} {'knobs':>9} {'layers':>6} {'err8':>6} {'/stock':>6} {'seconds':>7}  result")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            row = check(name, args.size, not args.no_export, Path(tmp))
            rows.append(row)
            print(f"{row['model']:22} {row['knobs']:>9} {row['layers']:>6} {fmt(row['err8'], '.3f'):>6} "
                  f"{fmt(row['stock'], '.2f'):>6} {row['seconds']:7.1f}  {row['result']}", flush=True)
    passed = [r for r in rows if r["result"] == "pass"]
    ratios = [r["stock"] for r in rows if isinstance(r["stock"], float)]
    print(f"\npassed {len(passed)}/{len(rows)} in {sum(r['seconds'] for r in rows):.0f} s")
    if ratios:
        print(f"8-bit error / stock Brevitas (new families): max {max(ratios):.2f}, "
              f"{sum(r <= 1.15 for r in ratios)}/{len(ratios)} within 1.15x")
    for r in rows:
        if r["result"] != "pass":
            print(f"  {r['model']}: {r['result']}")


if __name__ == "__main__":
    main()
