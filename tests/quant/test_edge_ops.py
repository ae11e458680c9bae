"""The operations of edge CNNs (SiLU, Hardswish, Sigmoid, Hardsigmoid, squeeze-and-excitation,
concatenation, chunk and channel shuffle) on small models: how each is quantized, its knob ties
and the errors that name them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import brevitas.nn as qnn
from brevitas.nn.quant_layer import QuantNonLinearActLayer

from brevitas_amed.quant import UnsupportedModuleError, calibrate, export_qonnx, quantize, verify_qonnx


def conv_bn(cin, cout, act, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(cout), act())


class SqueezeExcite(nn.Module):
    """torchvision's SqueezeExcitation: a per-channel gate multiplied into the activation."""

    def __init__(self, channels, act, gate):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.act, self.fc2, self.gate = nn.Conv2d(channels, 4, 1), act(), nn.Conv2d(4, channels, 1), gate()

    def forward(self, x):
        return self.gate(self.fc2(self.act(self.fc1(self.pool(x))))) * x


class EdgeNet(nn.Module):
    """Stem, depthwise conv, squeeze-and-excitation, projection, head (MobileNetV3/EfficientNet)."""

    def __init__(self, act=nn.SiLU, se_act=nn.ReLU, gate=nn.Sigmoid):
        super().__init__()
        self.stem = conv_bn(3, 8, act)
        self.dw = conv_bn(8, 8, act, groups=8)
        self.se = SqueezeExcite(8, se_act, gate)
        self.project = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.project(self.se(self.dw(self.stem(x)))), 1), 1))


class ShuffleNet(nn.Module):
    """Chunk, a branch, concatenation and channel shuffle as in ShuffleNetV2, then a concatenation
    whose second input is also read by another layer."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 8, nn.ReLU)
        self.branch = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
        self.side = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU())
        self.tail, self.extra = nn.Conv2d(8, 8, 1), nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x1, x2 = self.stem(x).chunk(2, dim=1)
        out = torch.cat((x1, self.branch(x2)), dim=1)
        b, c, h, w = out.size()
        out = torch.transpose(out.view(b, 2, c // 2, h, w), 1, 2).contiguous().view(b, c, h, w)
        p1, p2 = out.chunk(2, dim=1)
        s = self.side(p2)
        return self.fc((self.tail(torch.cat((p1, s), dim=1)) + self.extra(s)).mean((2, 3)))


def _ready(model, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(8, 3, 8, 8)
    model.train()
    with torch.no_grad():
        model(x)  # BatchNorm statistics of a random network (see FIELD_NOTES)
    q = quantize(model.eval())
    calibrate(q, [x], train_mode=False)
    return q.eval(), x


def _module(q, layer_type, act_type=None):
    for module in q.model.modules():
        if isinstance(module, layer_type) and (act_type is None or isinstance(
                module.act_quant.fused_activation_quant_proxy.activation_impl, act_type)):
            return module
    raise AssertionError(f"no {layer_type.__name__} with {act_type}")


def test_silu_and_sigmoid_gate_are_quantized_as_lookup_table_and_unsigned_gate():
    q, x = _ready(EdgeNet())
    silu = _module(q, QuantNonLinearActLayer, nn.SiLU)
    assert silu.input_quant.is_quant_enabled and silu.act_quant.is_signed  # integer in, signed out
    gate = _module(q, qnn.QuantSigmoid)
    assert not gate.act_quant.is_signed
    # the gate feeds only the product: pinned at the highest width, as are the LUT inputs
    gate_knob = next(k for k in q.knobs.values() if k.kind == "act" and any(m.startswith("se.gate") for m in k.modules))
    assert gate_knob.layers == [] and gate_knob.fixed == 8
    lut_inputs = [k for k in q.knobs.values() if k.name.endswith(".input_quant")]
    assert lut_inputs and all(k.fixed == 8 and not k.layers for k in lut_inputs)
    # the projection reads the requantized product, a searchable knob of its own
    project_act = q.layer_knobs["project"][1]
    assert project_act is not None and q.knobs[project_act].searchable
    assert q.knobs[project_act].layers == ["project"]
    with torch.no_grad():
        before = q(x)
        q.set_knob_bits({project_act: 2})
        assert not torch.equal(before, q(x))


def test_every_layer_has_one_weight_and_one_input_knob():
    for model in (EdgeNet(), EdgeNet(nn.Hardswish, nn.ReLU, nn.Hardsigmoid), ShuffleNet()):
        q, _ = _ready(model)
        for layer, (w, a) in q.layer_knobs.items():
            assert w == layer and a is not None, layer
            assert layer in q.knobs[a].layers
        owners = [layer for k in q.knobs.values() for layer in k.layers if k.kind == "act"]
        assert sorted(owners) == sorted(q.layers)


def test_hardswish_and_hardsigmoid_use_brevitas_modules():
    q, x = _ready(EdgeNet(nn.Hardswish, nn.ReLU, nn.Hardsigmoid))
    hswish = _module(q, qnn.QuantHardSwish)
    assert hswish.act_quant.is_signed and hswish.input_quant.is_quant_enabled
    hsig = _module(q, QuantNonLinearActLayer, nn.Hardsigmoid)
    assert not hsig.act_quant.is_signed and not hsig.input_quant.is_quant_enabled
    with torch.no_grad():
        assert torch.isfinite(q(x)).all()


def test_concatenated_inputs_share_one_knob_named_in_errors():
    q, x = _ready(ShuffleNet())
    tied = [k for k in q.knobs.values() if any(t.startswith("cat ") for t in k.ties)]
    assert tied, [k.ties for k in q.knobs.values()]
    # tail reads the concatenation of p1 and side's ReLU; extra reads that ReLU directly
    tail, extra = q.layer_knobs["tail"][1], q.layer_knobs["extra"][1]
    assert tail == extra and any(t.startswith("cat ") for t in q.knobs[tail].ties)
    with pytest.raises(ValueError, match=r"share activation knob .*tied by: .*cat '"):
        q.set_bits({"tail": (8, 4), "extra": (8, 6)})
    q.set_bits({"tail": (8, 4), "extra": (8, 4)})
    with torch.no_grad():
        assert torch.isfinite(q(x)).all()


def test_chunk_parts_are_requantized_for_their_users():
    q, x = _ready(ShuffleNet())
    branch_act = q.layer_knobs["branch.0"][1]
    assert branch_act.endswith("_input_quant") and q.knobs[branch_act].searchable
    with torch.no_grad():
        before = q(x)
        q.set_knob_bits({branch_act: 2})
        assert not torch.equal(before, q(x))


def test_concatenation_quantizers_still_quantize_after_calibration():
    """Brevitas' calibration mode leaves a quantizer shared by two proxies as an observer."""
    q, x = _ready(ShuffleNet())
    quantizers = [m for m in q.model.modules() if hasattr(m, "observer_only")]
    assert quantizers and not any(m.observer_only for m in quantizers)


def test_residual_add_ties_are_named():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.a, self.b = conv_bn(3, 8, nn.ReLU), conv_bn(8, 8, nn.ReLU), conv_bn(8, 8, nn.ReLU)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            x = self.stem(x)
            return self.fc((self.b(self.a(x)) + x).mean((2, 3)))

    q, _ = _ready(Residual())
    assert any(t.startswith("add ") for k in q.knobs.values() for t in k.ties)


@pytest.mark.parametrize("act", [nn.SiLU, nn.Hardswish])
def test_lookup_table_activation_feeding_a_residual_add(act):
    """EfficientNetV2's FusedMBConv adds a SiLU output to the block input: Brevitas' alignment
    rebuilds the activation around the shared scale and it keeps its integer input."""

    class Fused(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.block, self.fc = conv_bn(3, 8, act), conv_bn(8, 8, act), nn.Linear(8, 2)

        def forward(self, x):
            x = self.stem(x)
            return self.fc((self.block(x) + x).mean((2, 3)))

    q, x = _ready(Fused())
    lut = [m for m in q.model.modules() if isinstance(m, QuantNonLinearActLayer)
           and isinstance(m.act_quant.fused_activation_quant_proxy.activation_impl, act)]
    assert len(lut) == 2 and all(m.input_quant.is_quant_enabled for m in lut)
    assert any(t.startswith("add ") for k in q.knobs.values() for t in k.ties)
    with torch.no_grad():
        assert torch.isfinite(q(x)).all()


@pytest.mark.parametrize("model", [EdgeNet(nn.Hardswish, nn.ReLU, nn.Hardsigmoid), ShuffleNet()],
                         ids=["hardswish-se", "shuffle"])
def test_export_is_verified_by_qonnx(model, tmp_path):
    q, x = _ready(model)
    q.set_knob_bits({name: 4 for name in list(q.search_space())[::2]})
    path = export_qonnx(q, x[:1], tmp_path / "m.onnx")
    check = verify_qonnx(q, path, x[:2])
    assert check.passed, check


@pytest.mark.parametrize("act", [nn.GELU, nn.LeakyReLU])
def test_unsupported_activation_names_path_and_type(act):
    with pytest.raises(UnsupportedModuleError, match=rf"'stem.2' of type {act.__name__} is not supported"):
        quantize(EdgeNet(act))
