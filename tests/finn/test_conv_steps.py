"""FINN build step for grouped convolutions that are not depthwise (``brevitas_amed/finn/conv_steps.py``).

A small RegNet-like network (RegNet's bottleneck blocks: 1x1, grouped 3x3, 1x1, with a projected
and an identity shortcut; two grouped convolutions, 2 and 4 groups) is quantized at mixed bits and
exported as the job exports. In FINN's own environment each variant of the step (block-diagonal
dense convolutions, the runner's default; Split -> per-group convolutions -> Concat) must leave
every tensor the graph computes unchanged and leave no grouped convolution, and the whole FINN
flow must reach FINN's estimates with a streamlined graph exactly equal to the QONNX model and
every MVAU (one per grouped layer, or one per group) carrying its layer's chosen weight bits.
Skipped only when FINN's environment does not exist (``brevitas-amed finn --setup``).
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from brevitas_amed.finn.check import expected_weight_dtype, weight_bit_mismatches

pytestmark = pytest.mark.slow
CHECK = Path(__file__).resolve().parent / "conv_check.py"
GROUPED = 2  # grouped 3x3 convolutions in SmallRegNet


def conv_bn(c_in: int, c_out: int, k: int = 1, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """torchvision's ``ResBottleneckBlock`` of RegNetX: 1x1, grouped 3x3, 1x1, then the shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, group_width: int):
        super().__init__()
        self.a = conv_bn(c_in, c_out)
        self.b = conv_bn(c_out, c_out, 3, stride, groups=c_out // group_width)
        self.c = conv_bn(c_out, c_out, relu=False)
        self.proj = conv_bn(c_in, c_out, 1, stride, relu=False) if (c_in != c_out or stride != 1) else None
        self.relu = nn.ReLU()

    def forward(self, x):
        shortcut = self.proj(x) if self.proj is not None else x
        return self.relu(shortcut + self.c(self.b(self.a(x))))


class SmallRegNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 8, 3, 2)
        self.block1 = Bottleneck(8, 16, 2, group_width=8)  # 2 groups, projected shortcut
        self.block2 = Bottleneck(16, 16, 1, group_width=4)  # 4 groups, identity shortcut
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture(scope="module")
def exported(finn_env, tmp_path_factory):
    """SmallRegNet's QONNX export at mixed bits (the grouped layers at two different weight bits)."""
    from brevitas_amed.quant import QuantPolicy, calibrate, export_qonnx, quantize

    torch.manual_seed(0)
    qmodel = quantize(SmallRegNet().eval(), QuantPolicy())
    calibrate(qmodel, [torch.randn(4, 3, 16, 16) for _ in range(4)], max_batches=4)
    rng = random.Random(3)
    choice = {knob: rng.choice(options) for knob, options in qmodel.search_space().items()}
    choice.update({"block1.b.0": 4, "block2.b.0": 6})  # the grouped layers at two other bits
    qmodel.set_knob_bits(choice)
    bits = {layer: list(b) for layer, b in qmodel.get_bits().items()}
    grouped = ["block1.b.0", "block2.b.0"]
    assert len({b[0] for b in bits.values()}) >= 4, bits  # mixed weight bits
    path = export_qonnx(qmodel, torch.randn(1, 3, 16, 16), tmp_path_factory.mktemp("regnet") / "small.onnx")
    return path, bits, grouped


def run_check(finn_env, *args) -> dict:
    run = subprocess.run([str(finn_env), str(CHECK), *map(str, args)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("variant", ["dense", "split"])
def test_the_step_rewrites_grouped_convs_and_leaves_every_tensor_unchanged(finn_env, exported, variant):
    path, bits, grouped = exported
    result = run_check(finn_env, "step", path, 3, variant)
    before = result["groups_before"]
    assert sorted(before, reverse=True)[:GROUPED] == [4, 2] and before.count(1) == len(before) - GROUPED
    assert set(result["groups_after"]) == {1}
    assert len(result["groups_after"]) == len(before) + (4 + 2 - GROUPED if variant == "split" else 0)
    assert ({"Split", "Concat"} <= set(result["ops_after"])) == (variant == "split")
    assert sorted(result["recorded"].values()) == [2, 4]
    assert result["tensors_compared"] > 20
    assert result["max_abs_diff"] == 0.0 and result["output_max_abs_diff"] == 0.0, result


def assert_weights_carry_the_chosen_bits(finn_env, path, out, bits, grouped, variant) -> list[dict]:
    """Every MVAU tied to a QONNX layer (or one group of a grouped layer) with the chosen weight bits."""
    weights = run_check(finn_env, "weights", path, out / "after_specialize_layers.onnx")
    nodes = weights["nodes"]
    assert weights["unmatched_layers"] == [] and all(n["layer"] for n in nodes), weights
    assert {n["op_type"] for n in nodes} == {"MVAU_hls"}
    assert {n["layer"] for n in nodes} == {b for b in bits if bits[b][0] is not None}
    for node in nodes:
        assert node["weight_dtype"] == expected_weight_dtype(bits[node["layer"]][0]), node
    per_layer = {layer: sorted(str(n["part"]) for n in nodes if n["layer"] == layer) for layer in grouped}
    if variant == "dense":  # one block-diagonal MVAU per grouped layer: at least (g-1)/g zeros
        assert per_layer == {layer: ["all"] for layer in grouped}
        assert all(n["zero_fraction"] >= 0.5 for n in nodes if n["layer"] in grouped)
    else:  # one MVAU per group
        assert per_layer == {"block1.b.0": ["0", "1"], "block2.b.0": ["0", "1", "2", "3"]}
    return nodes


def test_the_flow_carries_the_chosen_weight_bits_on_grouped_layers(finn_env, finn_flow, exported, tmp_path):
    path, bits, grouped = exported
    result = finn_flow(path, tmp_path)
    # the runner ties a block-diagonal MVAU to its layer by the non-zero weights: every layer tied
    assert weight_bit_mismatches(result["layers"], bits) == []
    assert_weights_carry_the_chosen_bits(finn_env, path, tmp_path, bits, grouped, "dense")


def test_the_split_variant_makes_one_mvau_per_group_through_the_flow(finn_env, exported, tmp_path):
    path, bits, grouped = exported
    assert run_check(finn_env, "flow", path, tmp_path) == {"rc": 0}
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["ok"] and result["streamlined_max_abs_diff"] == 0.0
    assert sum(name.startswith("StreamingSplit") for name in result["cycles_per_layer"]) == GROUPED
    assert sum(name.startswith("StreamingConcat") for name in result["cycles_per_layer"]) == GROUPED
    assert len(assert_weights_carry_the_chosen_bits(finn_env, path, tmp_path, bits, grouped, "split")) == 7 + 2 + 4
