"""FINN build steps for Hardswish and Hardsigmoid (``brevitas_amed/finn/activation_steps.py``).

A small MobileNetV3-like network (Hardswish after convolutions, a squeeze-and-excitation gate
with Hardsigmoid, a residual add, an average-pool head) is quantized at mixed bits and exported
as the job exports; in FINN's own environment each step must leave every activation the graph
computes unchanged (qonnx/FINN execution before and after), and the whole flow must reach FINN's
estimates with Hardswish as ``Lookup`` layers and the chosen weight bits. Skipped only when FINN's
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
from brevitas_amed.finn.env import finn_python, venv_path, venv_python
from brevitas_amed.finn.flow import RUNNER

pytestmark = pytest.mark.slow
CHECK = Path(__file__).resolve().parent / "activation_check.py"


class SmallMobileNetV3(nn.Module):
    def __init__(self):
        from torchvision.ops import SqueezeExcitation

        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.Hardswish())
        self.se = SqueezeExcitation(8, 4, scale_activation=nn.Hardsigmoid)
        self.pw = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.head(x + self.pw(self.se(self.dw(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture(scope="module")
def finn_env():
    if not venv_python(venv_path()).is_file():
        pytest.skip(f"no FINN environment at {venv_path()}: build it with `brevitas-amed finn --setup`")
    return finn_python()


@pytest.fixture(scope="module")
def exported(finn_env, tmp_path_factory):
    """The small network's QONNX export at random mixed bits, and the bits per layer."""
    from brevitas_amed.quant import QuantPolicy, calibrate, export_qonnx, quantize

    torch.manual_seed(0)
    qmodel = quantize(SmallMobileNetV3().eval(), QuantPolicy())
    calibrate(qmodel, [torch.randn(4, 3, 16, 16) for _ in range(4)], max_batches=4)
    rng = random.Random(1)
    qmodel.set_knob_bits({knob: rng.choice(options) for knob, options in qmodel.search_space().items()})
    path = export_qonnx(qmodel, torch.randn(1, 3, 16, 16), tmp_path_factory.mktemp("hard_act") / "small.onnx")
    return path, {layer: list(bits) for layer, bits in qmodel.get_bits().items()}


def test_each_step_leaves_every_activation_unchanged(finn_env, exported):
    path, bits = exported
    run = subprocess.run([str(finn_env), str(CHECK), str(path), "3"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["hardswish"] == 3 and result["hardsigmoid"] == 1
    assert sorted({b[1] for b in bits.values()}) != [8], "the allocation should mix activation bits"
    hardsigmoid = result["steps"]["step_amed_hardsigmoid_thresholds"]
    lookup = result["steps"]["step_amed_hardswish_lookup"]
    for step in (hardsigmoid, lookup):
        assert step["tensors_compared"] > 20 and step["output_range"] > 0
        assert step["max_abs_diff"] == 0.0 and step["output_max_abs_diff"] == 0.0, step
    assert "HardSigmoid" not in hardsigmoid["ops"] and "HardSwish" in hardsigmoid["ops"]
    assert "HardSwish" not in lookup["ops"] and lookup["gathers"] == 3
    assert all(t.startswith(("INT", "UINT")) for t in lookup["table_types"])
    assert result["tight_hardsigmoid_thresholds"]


def test_the_flow_maps_hardswish_to_lookup_layers_with_the_chosen_weight_bits(finn_env, exported, tmp_path):
    path, bits = exported
    run = subprocess.run([str(finn_env), str(RUNNER), str(path), str(tmp_path), "--target-fps", "1000"],
                         capture_output=True, text=True, timeout=900)
    result = json.loads((tmp_path / "result.json").read_text())
    assert run.returncode == 0 and result["ok"], result.get("error") or run.stdout[-2000:]
    assert result["streamlined_max_abs_diff"] == 0.0
    assert weight_bit_mismatches(result["layers"], bits) == []
    assert sum(name.startswith("Lookup") for name in result["cycles_per_layer"]) == 3
    assert any(name.startswith("ElementwiseMul") for name in result["cycles_per_layer"])  # the SE gate
    assert {n["op_type"] for n in result["layers"]} >= {"MVAU_hls", "VVAU_hls"}
