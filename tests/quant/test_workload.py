"""Workloads built from torch models, and the torch-free dataclasses."""

from __future__ import annotations

import json

import pytest
import torchvision

from brevitas_amed.quant import build_workload, quantize
from hw_backends.workload import Layer, Workload


def test_resnet18_224_has_21_compute_layers_with_right_shapes():
    wl = build_workload(torchvision.models.resnet18(), (3, 224, 224), name="resnet18")
    assert len(wl) == 21
    first = wl.layers[0]
    assert (first.name, first.in_channels, first.out_channels, first.in_h, first.kernel_h, first.stride_h, first.pad_h) == \
        ("conv1", 3, 64, 224, 7, 2, 3)
    assert (first.out_h, first.out_w) == (112, 112)
    l1 = wl["layer1.0.conv1"]
    assert (l1.in_channels, l1.out_channels, l1.in_h, l1.kernel_h, l1.stride_h, l1.pad_h, l1.out_h) == (64, 64, 56, 3, 1, 1, 56)
    ds = wl["layer2.0.downsample.0"]
    assert (ds.in_channels, ds.out_channels, ds.in_h, ds.kernel_h, ds.stride_h, ds.pad_h, ds.out_h) == (64, 128, 56, 1, 2, 0, 28)
    l4 = wl["layer4.1.conv2"]
    assert (l4.in_channels, l4.out_channels, l4.in_h, l4.out_h) == (512, 512, 7, 7)
    fc = wl.layers[-1]
    assert (fc.name, fc.kind, fc.in_channels, fc.out_channels) == ("fc", "linear", 512, 1000)
    assert [l.kind for l in wl].count("conv") == 20
    # ResNet-18's well-known 1.81 GMACs.
    assert 1.80e9 < wl.macs < 1.83e9


def test_mobilenet_v2_depthwise_layers_keep_groups():
    wl = build_workload(torchvision.models.mobilenet_v2(), (3, 224, 224))
    assert len(wl) == 53
    dw = wl["features.1.conv.0.0"]
    assert dw.groups == dw.in_channels == 32 and dw.is_depthwise


def test_quantized_model_workload_is_tied_to_knobs(trained_digits_cnn):
    q = quantize(trained_digits_cnn)
    wl = q.workload((1, 8, 8), name="digits")
    assert wl.names == q.layers
    for layer in wl:
        assert (layer.weight_knob, layer.act_knob) == q.layer_knobs[layer.name]
        assert layer.act_knob in q.knobs and layer.weight_knob in q.knobs


def test_workload_round_trips_through_json():
    wl = build_workload(torchvision.models.resnet18(), (3, 64, 64))
    again = Workload.from_dict(json.loads(json.dumps(wl.to_dict())))
    assert again == wl


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="pool"), "kind must be one of"),
    (dict(in_channels=0), "in_channels must be a positive int"),
    (dict(groups=3), "groups=3 must divide"),
    (dict(kernel_h=9), "kernel larger than padded input"),
    (dict(pad_h=-1), "pad_h must be a non-negative int"),
])
def test_bad_layers_are_rejected(kwargs, match):
    base = dict(name="c", kind="conv", in_channels=4, out_channels=8, in_h=8, in_w=8, kernel_h=3, kernel_w=3)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Layer(**base)


def test_duplicate_layer_names_and_unknown_fields_are_rejected():
    layer = Layer("a", "linear", 4, 4)
    with pytest.raises(ValueError, match="duplicate layer names"):
        Workload("w", (layer, layer))
    with pytest.raises(ValueError, match="unknown layer fields"):
        Layer.from_dict({**layer.to_dict(), "colour": 1})


def test_hw_backends_workload_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, hw_backends.workload; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
