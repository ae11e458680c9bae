"""The smallest torchvision member of each edge-CNN family: mixed bits change the output, the
workload costs every layer, and the QONNX export is verified by qonnx execution."""

from __future__ import annotations

import random

import pytest
import torch
import torchvision

import hw_backends
from brevitas_amed.quant import calibrate, export_qonnx, layer_bits, quantize, verify_qonnx

FAMILIES = ["mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf", "shufflenet_v2_x0_5"]


@pytest.mark.parametrize("name", FAMILIES)
def test_family_quantizes_changes_with_bits_and_exports(name, tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    x = torch.randn(4, 3, 32, 32)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(x)  # BatchNorm statistics of a random network (see FIELD_NOTES)
    q = quantize(model.eval())
    calibrate(q, [x], train_mode=False)
    q.eval()
    assert all(a is not None for _, a in q.layer_knobs.values())  # every input has its knob
    with torch.no_grad():
        ref = model(x)
        out8 = q(x)
        assert ((out8 - ref).abs().mean() / ref.abs().mean()) < 0.5
        rng = random.Random(0)
        q.set_knob_bits({k: rng.choice((2, 3, 4)) for k in q.search_space()})
        mixed = q(x)
    assert torch.isfinite(mixed).all() and not torch.equal(out8, mixed)

    workload = q.workload((3, 32, 32))
    assert workload.names == q.layers
    grouped = [layer for layer in workload if layer.groups > 1]
    assert grouped  # depthwise or grouped convolutions, costed as groups of convolutions
    report = hw_backends.get("analytic").latency(workload, layer_bits(q))
    assert all(cost.cycles > 0 for cost in report.per_layer.values())

    path = export_qonnx(q, x[:1], tmp_path / f"{name}.onnx")
    check = verify_qonnx(q, path, x[:1])
    assert check.passed and check.max_abs_diff <= (check.output_step or 0) * 1.001, check
