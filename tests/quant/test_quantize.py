"""Run-time bit knobs on real Brevitas models."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

from brevitas_amed.quant import QuantPolicy, UnsupportedModuleError, calibrate, quantize


@pytest.fixture()
def qdigits(trained_digits_cnn, digits_splits):
    q = quantize(trained_digits_cnn)
    calibrate(q, DataLoader(digits_splits.train, batch_size=64), train_mode=False)
    return q.eval()


def _scales(q):
    """The learned quantizer scales."""
    return [p for n, p in q.named_parameters() if "scaling_impl" in n]


def _test_batch(splits, n=200):
    x, y = splits.test.tensors
    return x[:n], y[:n]


def test_bits_change_outputs(qdigits, digits_splits):
    x, _ = _test_batch(digits_splits)
    with torch.no_grad():
        qdigits.set_uniform(8)
        out8 = qdigits(x)
        qdigits.set_bits({"conv2.0": (3, 3)})
        out_mixed = qdigits(x)
    assert qdigits.get_bits()["conv2.0"] == (3, 3)
    assert not torch.allclose(out8, out_mixed)


def test_error_against_float_grows_as_bits_drop(qdigits, trained_digits_cnn, digits_splits):
    x, _ = _test_batch(digits_splits)
    errors = []
    with torch.no_grad():
        ref = trained_digits_cnn(x)
        for bits in (8, 6, 4, 3, 2):
            qdigits.set_uniform(bits)
            errors.append((qdigits(x) - ref).abs().mean().item())
    assert errors == sorted(errors), errors
    assert errors[0] < 0.1 * errors[-1]


def test_eight_bit_model_keeps_float_accuracy(qdigits, trained_digits_cnn, digits_splits):
    x, y = digits_splits.test.tensors
    with torch.no_grad():
        float_acc = (trained_digits_cnn(x).argmax(1) == y).float().mean().item()
        q_acc = (qdigits(x).argmax(1) == y).float().mean().item()
    assert float_acc > 0.9
    assert abs(float_acc - q_acc) < 0.02


def test_state_dict_round_trip_keeps_bits_and_scales(qdigits, trained_digits_cnn, digits_splits, tmp_path):
    allocation = {"conv2.0": (3, 5), "block_a.0": (4, 2), "conv5.0": (6, 7)}
    qdigits.set_bits(allocation)
    with torch.no_grad():
        for p in _scales(qdigits):
            p.mul_(1.1)  # make the learned scales differ from any fresh initialisation
    torch.save(qdigits.state_dict(), tmp_path / "q.pt")
    fresh = quantize(trained_digits_cnn)
    fresh.load_state_dict(torch.load(tmp_path / "q.pt"))
    fresh.eval()
    assert fresh.get_bits() == qdigits.get_bits()
    for name, bits in allocation.items():
        assert fresh.get_bits()[name] == bits
    x, _ = _test_batch(digits_splits, 50)
    with torch.no_grad():
        assert torch.equal(fresh(x), qdigits(x))


def test_gradients_reach_every_learned_scale(qdigits, digits_splits):
    x, y = _test_batch(digits_splits, 64)
    qdigits.train()
    qdigits.set_uniform(4)
    torch.nn.functional.cross_entropy(qdigits(x), y).backward()
    scales = dict((n, p) for n, p in qdigits.named_parameters() if "scaling_impl" in n)
    assert len(scales) >= 2 * len(qdigits.layers)  # weights and activations
    missing = [n for n, p in scales.items() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing


def test_knob_map_names_original_layers(qdigits):
    layers = [n for n, m in qdigits.model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert qdigits.layers == ["stem.0", "conv2.0", "block_a.0", "block_b.0", "conv5.0", "fc"]
    assert set(qdigits.layers) == set(layers)
    for layer, (w_knob, a_knob) in qdigits.layer_knobs.items():
        assert qdigits.knobs[w_knob].layers == [layer]
        assert layer in qdigits.knobs[a_knob].layers


def test_residual_add_inputs_share_one_knob(qdigits):
    # block_b's output and the block input are added: both quantizers sit on one knob.
    knob = qdigits.knobs["act:conv2.2"]
    assert len(knob.modules) == 2 and len(knob.impl_paths) == 2
    qdigits.set_knob_bits({"act:conv2.2": 3})
    assert {int(b.bit_width.item()) for b in knob.impls()} == {3}


def test_first_and_last_layer_policy(trained_digits_cnn):
    q = quantize(trained_digits_cnn)
    assert q.get_bits()["stem.0"] == (8, 8) and q.get_bits()["fc"] == (8, 8)
    assert "stem.0" not in q.search_space() and "fc" not in q.search_space()
    with pytest.raises(ValueError, match="fixed at 8"):
        q.set_bits({"stem.0": (4, 8)})
    searched = quantize(trained_digits_cnn, QuantPolicy(first_layer="search", last_layer=6))
    assert "stem.0" in searched.search_space() and searched.get_bits()["fc"] == (6, 6)


def test_float_first_and_last_layer(trained_digits_cnn, digits_splits):
    q = quantize(trained_digits_cnn, QuantPolicy(first_layer="float", last_layer="float"))
    calibrate(q, DataLoader(digits_splits.train, batch_size=64), train_mode=False)
    q.eval()
    assert q.get_bits()["stem.0"] == (None, None) and q.get_bits()["fc"] == (None, None)
    x, _ = _test_batch(digits_splits, 20)
    with torch.no_grad():
        out = q(x)
    assert torch.isfinite(out).all()
    # The float first layer computes with the float weights exactly.
    stem = q.model.get_submodule("stem.0")
    assert torch.equal(stem.quant_weight().value if hasattr(stem.quant_weight(), "value") else stem.quant_weight(), trained_digits_cnn.stem[0].weight)


@pytest.mark.parametrize("allocation, match", [
    ({"nope": (4, 4)}, "unknown layer 'nope'"),
    ({"conv2.0": (9, 4)}, r"layer 'conv2.0' weight bits=9 .*allowed"),
    ({"conv2.0": (4, 1)}, r"layer 'conv2.0' activation bits=1"),
    ({"conv2.0": (4.0, 4)}, "must be an int"),
    ({"conv2.0": 4}, r"give \(weight_bits, act_bits\)"),
])
def test_bad_allocations_are_rejected(qdigits, allocation, match):
    before = qdigits.get_bits()
    with pytest.raises(ValueError, match=match):
        qdigits.set_bits(allocation)
    assert qdigits.get_bits() == before


def test_layers_sharing_an_act_knob_must_agree(trained_digits_cnn):
    model = torchvision.models.resnet18(num_classes=10)
    q = quantize(model)
    # conv1 and downsample of layer2.0 read the same activation.
    assert q.layer_knobs["layer2.0.conv1"][1] == q.layer_knobs["layer2.0.downsample.0"][1]
    with pytest.raises(ValueError, match="share activation knob"):
        q.set_bits({"layer2.0.conv1": (4, 4), "layer2.0.downsample.0": (4, 6)})
    q.set_bits({"layer2.0.conv1": (4, 5), "layer2.0.downsample.0": (3, 5)})


def test_unknown_knob_and_policy_errors(qdigits):
    with pytest.raises(ValueError, match="unknown bit knob 'act:nope'"):
        qdigits.set_knob_bits({"act:nope": 4})
    with pytest.raises(ValueError, match="weight_bits"):
        QuantPolicy(weight_bits=(1, 8))
    with pytest.raises(ValueError, match="first_layer"):
        QuantPolicy(first_layer="half")


class _WithGelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU())
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


def test_unsupported_module_names_path_and_type():
    with pytest.raises(UnsupportedModuleError, match=r"'body.1' of type GELU"):
        quantize(_WithGelu())


def test_quantize_leaves_float_model_untouched(trained_digits_cnn):
    before = copy.deepcopy(trained_digits_cnn.state_dict())
    quantize(trained_digits_cnn)
    after = trained_digits_cnn.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_calibrate_rejects_empty_data(trained_digits_cnn):
    with pytest.raises(ValueError, match="no batch"):
        calibrate(quantize(trained_digits_cnn), [])


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_torchvision_models_forward_backward_at_every_bit_width(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    q = quantize(model)
    x = torch.randn(2, 3, 32, 32)
    calibrate(q, [x], train_mode=True)
    q.train()
    for bits in range(2, 9):
        q.set_uniform(bits)
        q.zero_grad()
        out = q(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all(), bits
        out.sum().backward()
        grads = [p.grad for p in _scales(q)]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), bits
    assert {b for pair in q.get_bits().values() for b in pair} == {8}  # fixed first/last; searchable ones at 8


def test_residual_scales_stay_tied_after_loading_and_training(qdigits, digits_splits):
    """Brevitas rebuilds quantizers on load; the shared residual scale must stay one parameter."""
    qdigits.load_state_dict(copy.deepcopy(qdigits.state_dict()))
    modules = dict(qdigits.model.named_modules(remove_duplicate=False))
    scale = lambda path: modules[path].act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl
    assert scale("conv2.2") is scale("add_quant")
    x, y = _test_batch(digits_splits, 64)
    qdigits.train()
    qdigits.set_bits({"block_a.0": (4, 3), "conv2.0": (5, 2)})
    opt = torch.optim.Adam(qdigits.parameters(), 1e-2)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(qdigits(x), y).backward()
        opt.step()
    qdigits.eval()
    with torch.no_grad():
        assert torch.isfinite(qdigits(x)).all()  # an untied scale raises "Scaling factors are different"


def test_loading_a_state_keeps_every_tensor_on_the_models_device(qdigits):
    """Brevitas rebuilds each quantizer's modules, on the CPU, when a state is loaded: on a GPU the
    learned scales landed on the CPU and every trial failed. The meta device shows it without a GPU."""
    state = copy.deepcopy(qdigits.state_dict())
    q = copy.deepcopy(qdigits).to("meta")
    q.load_state_dict(state)
    elsewhere = [n for n, t in itertools.chain(q.named_parameters(), q.named_buffers()) if t.device.type != "meta"]
    assert not elsewhere, elsewhere[:3]
