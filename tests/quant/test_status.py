"""Quantizers on and off: quantize_only and float-by-policy knobs, through Brevitas' manager."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from brevitas.proxy.quant_proxy import QuantProxyFromInjector
from brevitas_amed.quant import QuantPolicy, calibrate, quantize, quantize_only


@pytest.fixture(scope="module")
def digits_q(trained_digits_cnn, digits_splits):
    qmodel = quantize(trained_digits_cnn, QuantPolicy(weight_bits=(2, 4, 8), act_bits=(2, 4, 8)))
    loader = DataLoader(digits_splits.train, batch_size=48)
    calibrate(qmodel, loader, max_batches=2, train_mode=False)
    return qmodel.eval(), next(iter(loader))[0]


def _status(qmodel):
    proxies = {id(m): m.is_quant_enabled for m in qmodel.model.modules() if isinstance(m, QuantProxyFromInjector)}
    returns = {id(m): m.return_quant_tensor for m in qmodel.model.modules() if hasattr(m, "return_quant_tensor")}
    return proxies, returns


@pytest.mark.parametrize("knob", ["conv2.0", "act:conv2.2", "fc"])
def test_quantize_only_leaves_only_that_knobs_quantizers_on(digits_q, knob):
    qmodel, _x = digits_q
    before = _status(qmodel)
    impls = {id(m) for m in qmodel.knobs[knob].impls()}
    with quantize_only(qmodel, knob):
        for module in qmodel.model.modules():
            if isinstance(module, QuantProxyFromInjector):
                owns = any(id(sub) in impls for sub in module.modules())
                assert module.is_quant_enabled == owns, (knob, module)
        assert not any(_status(qmodel)[1].values())  # float tensors travel, not QuantTensors
    assert _status(qmodel) == before


def test_quantize_only_leaves_one_knob_between_float_and_its_bits(digits_q, trained_digits_cnn):
    qmodel, x = digits_q
    with quantize_only(qmodel, "conv2.0"), torch.no_grad():
        qmodel.knobs["conv2.0"].set(8)
        eight = qmodel(x)
        qmodel.knobs["conv2.0"].set(2)
        two = qmodel(x)
        reference = trained_digits_cnn(x)
    qmodel.knobs["conv2.0"].set(8)
    assert 0 < (eight - reference).abs().max() < (two - reference).abs().max()
    with pytest.raises(ValueError, match="unknown bit knob 'nope'"):
        with quantize_only(qmodel, "nope"):
            pass


def test_quantize_only_restores_on_error(digits_q):
    qmodel, _x = digits_q
    before = _status(qmodel)
    with pytest.raises(RuntimeError, match="boom"):
        with quantize_only(qmodel, "conv2.0"):
            raise RuntimeError("boom")
    assert _status(qmodel) == before


def test_float_knobs_have_every_quantizer_off(trained_digits_cnn):
    qmodel = quantize(trained_digits_cnn, QuantPolicy(first_layer="float", last_layer="float"))
    for knob in (k for k in qmodel.knobs.values() if k.is_float):
        for path in knob.modules:
            module = qmodel.model.get_submodule(path)
            assert not module.return_quant_tensor
            assert not any(m.is_quant_enabled for m in module.modules() if isinstance(m, QuantProxyFromInjector))
        for layer in knob.layers if knob.kind == "act" else []:
            assert not qmodel.model.get_submodule(layer).bias_quant.is_quant_enabled
    assert qmodel.model.get_submodule("conv2.0").weight_quant.is_quant_enabled
