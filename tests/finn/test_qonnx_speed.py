"""``brevitas_amed/finn/qonnx_speed.py``: qonnx's graph helpers in linear time must leave every
graph of the front steps byte for byte as qonnx's own helpers leave it, tensor names made
canonical (some steps name tensors at random). The network is EfficientNet-like: SiLU tables, a
squeeze-and-excitation gate, a residual add, a pooling head; mixed bits. Runs in FINN's
environment; skipped only when it does not exist."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from .test_activation_steps import SmallNet

pytestmark = pytest.mark.slow
CHECK = Path(__file__).resolve().parent / "speed_check.py"


def test_linear_helpers_give_the_same_graphs_as_qonnx(finn_env, tmp_path):
    from brevitas_amed.quant import QuantPolicy, calibrate, export_qonnx, quantize

    torch.manual_seed(0)
    qmodel = quantize(SmallNet(act=nn.SiLU, se_act=nn.SiLU, gate=nn.Sigmoid).eval(), QuantPolicy())
    calibrate(qmodel, [torch.randn(4, 3, 16, 16) for _ in range(4)], max_batches=4)
    rng = random.Random(2)
    qmodel.set_knob_bits({knob: rng.choice(options) for knob, options in qmodel.search_space().items()})
    path = export_qonnx(qmodel, torch.randn(1, 3, 16, 16), tmp_path / "small.onnx")
    runs = {mode: subprocess.Popen([str(finn_env), str(CHECK), str(path), mode], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for mode in ("plain", "linear")}  # side by side
    results = {}
    for mode, run in runs.items():
        out, err = run.communicate(timeout=900)
        assert run.returncode == 0, err[-3000:]
        results[mode] = json.loads(out.strip().splitlines()[-1])
    assert results["linear"]["installed"], "qonnx is not the version the linear helpers were checked against"
    assert len(results["plain"]["digests"]) == 9 and results["plain"]["nodes"] > 10
    assert results["linear"]["digests"] == results["plain"]["digests"]
