"""FINN build steps for ShuffleNetV2 (``brevitas_amed/finn/shuffle_steps.py``): channel split,
concatenation and channel shuffle.

A small ShuffleNetV2-like network (torchvision's own ``InvertedResidual`` blocks: a downsampling
block with two branches and a block that splits the channels, each with a depthwise convolution,
a concatenation and a channel shuffle) is quantized at mixed bits and exported as the job exports.
In FINN's own environment the channel-shuffle rewrite must permute exactly as the NCHW shuffle
did, the ReLU-quantizer step must leave every tensor unchanged, the layout step must leave the
output unchanged and no NCHW transpose between layers, and the whole flow must reach FINN's
estimates with ``StreamingSplit``/``StreamingConcat``/``InnerShuffle`` layers, the chosen weight
bits and a streamlined difference of 0.0. Skipped only when FINN's environment does not exist
(``brevitas-amed finn --setup``).
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
CHECK = Path(__file__).resolve().parent / "shuffle_check.py"


class SmallShuffleNet(nn.Module):
    """Stem, a downsampling ShuffleNetV2 block (two branches), a channel-splitting block, a second
    downsampling block (its two branches read the shuffled output through their own input
    quantizers: a fork, as between ShuffleNetV2's stages), a 1x1 head and torchvision's
    ``x.mean([2, 3])`` pooling."""

    def __init__(self):
        from torchvision.models.shufflenetv2 import InvertedResidual

        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.down = InvertedResidual(8, 16, 2)
        self.block = InvertedResidual(16, 16, 1)
        self.down2 = InvertedResidual(16, 32, 2)
        self.head = nn.Sequential(nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True))
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.head(self.down2(self.block(self.down(self.stem(x)))))
        return self.fc(x.mean([2, 3]))


@pytest.fixture(scope="module")
def exported(finn_env, tmp_path_factory):
    """The small network's QONNX export at random mixed bits, and the bits per layer."""
    from brevitas_amed.quant import QuantPolicy, calibrate, export_qonnx, quantize

    torch.manual_seed(0)
    net = SmallShuffleNet().train()
    with torch.no_grad():  # batch-norm statistics of a live network, not the untrained defaults
        for _ in range(3):
            net(torch.randn(8, 3, 16, 16))
    qmodel = quantize(net.eval(), QuantPolicy())
    calibrate(qmodel, [torch.randn(4, 3, 16, 16) for _ in range(4)], max_batches=4)
    rng = random.Random(1)
    qmodel.set_knob_bits({knob: rng.choice(options) for knob, options in qmodel.search_space().items()})
    path = export_qonnx(qmodel, torch.randn(1, 3, 16, 16), tmp_path_factory.mktemp("shuffle") / "small.onnx")
    return path, {layer: list(bits) for layer, bits in qmodel.get_bits().items()}


def test_each_step_computes_what_the_graph_computed(finn_env, exported):
    path, bits = exported
    run = subprocess.run([str(finn_env), str(CHECK), str(path), "3"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert len({b[0] for b in bits.values()}) > 2 and len({b[1] for b in bits.values()}) > 2, bits

    shuffles = result["channel_shuffles"]
    for groups in ("groups_2", "groups_3", "groups_4"):
        case = shuffles[groups]
        assert case["rewritten"] and case["permutes"] and case["max_abs_diff"] == 0.0, case
        assert case["transposes"] == [[0, 1, 2, 4, 3], [0, 3, 1, 2]]  # channel swap innermost, then to NCHW
    assert not shuffles["width_moves"]["rewritten"]  # moves the width axis: not a channel shuffle

    quant = result["relu_signed_quant"]
    assert quant["signed_relu_quantizers_before"] >= 1  # the concatenation's shared quantizer after a ReLU
    assert quant["signed_relu_quantizers_after"] == 0  # torchvision puts the signed half first: all rewritten
    assert quant["tensors_compared"] > 40 and quant["output_range"] > 0 and quant["max_abs_diff"] == 0.0, quant

    layouts = result["shuffle_layouts"]
    assert layouts["output_range"] > 0 and layouts["output_max_abs_diff"] == 0.0, layouts
    assert layouts["tensors_compared"] > 20 and layouts["max_abs_diff"] == 0.0, layouts
    assert layouts["transposes_before"] > 6
    # left: the input's NCHW->NHWC transpose and the three channel shuffles, now on the innermost axes
    assert sorted(layouts["transposes"]) == [[0, 1, 2, 4, 3]] * 3 + [[0, 2, 3, 1]]
    assert layouts["axes"] == {"Split": [3], "Concat": [3, 3, 3]}
    assert layouts["nchw_thresholds_inside"] == []


def test_the_flow_maps_split_concat_and_shuffle_to_hardware_with_the_chosen_weight_bits(finn_flow, exported, tmp_path):
    path, bits = exported
    result = finn_flow(path, tmp_path)
    assert weight_bit_mismatches(result["layers"], bits) == []
    assert {n["op_type"] for n in result["layers"]} == {"MVAU_hls", "VVAU_hls"}
    assert sum(n["op_type"] == "VVAU_hls" for n in result["layers"]) == 5  # the depthwise convolutions
    kinds = [name.rsplit("_", 1)[0] for name in result["cycles_per_layer"]]
    assert kinds.count("StreamingConcat_hls") == 3 and kinds.count("StreamingSplit_hls") == 1
    assert kinds.count("InnerShuffle_rtl") == 3 and "Shuffle" not in kinds
    assert result["host_before"] == ["Transpose"] and result["host_after"] == []
