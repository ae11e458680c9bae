"""FINN build steps for Hardswish, SiLU, Hardsigmoid and Sigmoid
(``brevitas_amed/finn/activation_steps.py``).

Small MobileNetV3-like and EfficientNet-like networks (Hardswish or SiLU after convolutions, a
squeeze-and-excitation gate with Hardsigmoid or Sigmoid, a residual add, an average-pool head) are
quantized at mixed bits and exported as the job exports; in FINN's own environment each step must
leave every activation the graph computes unchanged (qonnx/FINN execution before and after), the
folded thresholds must be the tightest float32 ones, and the whole flow must reach FINN's estimates
with Hardswish/SiLU as ``Lookup`` layers and the chosen weight bits. Skipped only when FINN's
environment does not exist (``brevitas-amed finn --setup``).
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from brevitas_amed.finn.check import weight_bit_mismatches

pytestmark = pytest.mark.slow
CHECK = Path(__file__).resolve().parent / "activation_check.py"


class SmallNet(nn.Module):
    """MobileNetV3's block (Hardswish, ReLU + Hardsigmoid gate) or EfficientNet's (SiLU, SiLU +
    Sigmoid gate)."""

    def __init__(self, act=nn.Hardswish, se_act=nn.ReLU, gate=nn.Hardsigmoid):
        from torchvision.ops import SqueezeExcitation

        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), act())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), act())
        self.se = SqueezeExcitation(8, 4, activation=se_act, scale_activation=gate)
        self.pw = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), act())
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.head(x + self.pw(self.se(self.dw(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


# family: network, activation nodes after FINN's tidy-up, tables, Sigmoid nodes left by the threshold step
FAMILIES = {
    "mobilenet_v3": (dict(), dict(hardswish=3, hardsigmoid=1, sigmoid=0), 3, 0),
    # SiLU is Sigmoid + Mul(x, sigmoid) in the graph: 4 SiLU (one in the gate's hidden layer) + the gate
    "efficientnet": (dict(act=nn.SiLU, se_act=nn.SiLU, gate=nn.Sigmoid), dict(hardswish=0, hardsigmoid=0, sigmoid=5),
                     4, 4),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def exported(finn_env, tmp_path_factory, request):
    """The small network's QONNX export at random mixed bits, the bits per layer and the family."""
    from brevitas_amed.quant import QuantPolicy, calibrate, export_qonnx, quantize

    torch.manual_seed(0)
    qmodel = quantize(SmallNet(**FAMILIES[request.param][0]).eval(), QuantPolicy())
    calibrate(qmodel, [torch.randn(4, 3, 16, 16) for _ in range(4)], max_batches=4)
    rng = random.Random(1)
    qmodel.set_knob_bits({knob: rng.choice(options) for knob, options in qmodel.search_space().items()})
    path = export_qonnx(qmodel, torch.randn(1, 3, 16, 16), tmp_path_factory.mktemp(request.param) / "small.onnx")
    return path, {layer: list(bits) for layer, bits in qmodel.get_bits().items()}, request.param


def test_each_step_leaves_every_activation_unchanged(finn_env, exported):
    path, bits, family = exported
    _, activations, tables, sigmoids_left = FAMILIES[family]
    run = subprocess.run([str(finn_env), str(CHECK), str(path), "3"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert {op: result[op] for op in activations} == activations
    assert sorted({b[1] for b in bits.values()}) != [8], "the allocation should mix activation bits"
    thresholds = result["steps"]["step_amed_activation_thresholds"]
    lookup = result["steps"]["step_amed_activation_lookup"]
    for step in (thresholds, lookup):
        assert step["tensors_compared"] > 20 and step["output_range"] > 0
        assert step["max_abs_diff"] == 0.0 and step["output_max_abs_diff"] == 0.0, step
    assert "HardSigmoid" not in thresholds["ops"] and thresholds["sigmoids"] == sigmoids_left
    assert ("HardSwish" in thresholds["ops"]) == (activations["hardswish"] > 0)
    assert {"HardSwish", "Sigmoid"}.isdisjoint(lookup["ops"]) and lookup["gathers"] == tables
    assert all(t.startswith(("INT", "UINT")) for t in lookup["table_types"])
    assert result["tight_hardsigmoid_thresholds"] and result["tight_sigmoid_thresholds"]


def test_the_flow_maps_hardswish_and_silu_to_lookup_layers_with_the_chosen_weight_bits(finn_flow, exported, tmp_path):
    path, bits, family = exported
    result = finn_flow(path, tmp_path)
    assert weight_bit_mismatches(result["layers"], bits) == []
    assert sum(name.startswith("Lookup") for name in result["cycles_per_layer"]) == FAMILIES[family][2]
    assert any(name.startswith("ElementwiseMul") for name in result["cycles_per_layer"])  # the SE gate
    assert {n["op_type"] for n in result["layers"]} >= {"MVAU_hls", "VVAU_hls"}
