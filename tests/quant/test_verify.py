"""verify_qonnx: the quantizer-by-quantizer criterion accepts rounding flips at ties and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from torch.utils.data import DataLoader

from brevitas_amed.quant import ExportCheck, calibrate, export_qonnx, quantize, verify_qonnx
from brevitas_amed.quant.verify import TIE_WINDOW, compare_one


def _check() -> ExportCheck:
    return ExportCheck("m.onnx", 1.0, 1.0, 1e-3, False)


def test_one_step_flip_at_a_tie_is_float_noise():
    scale = np.float32(0.5)
    pre = np.array([1.0, 1.2499999, 2.0], dtype=np.float32)  # 2.4999998 steps: a tie within float32 noise
    want = np.array([1.0, 1.0, 2.0], dtype=np.float32)  # PyTorch rounded to 2 steps
    got = np.array([1.0, 1.5, 2.0], dtype=np.float32)  # qonnx to 3 steps
    check = _check()
    assert compare_one("Quant_0", pre, got, scale, want, check) == ""
    assert (check.quantizers, check.elements, check.flipped) == (1, 3, 1)
    assert check.max_step_diff == pytest.approx(1.0) and check.max_tie_distance < TIE_WINDOW


def test_flip_away_from_a_tie_or_by_two_steps_fails():
    scale = np.float32(0.5)
    pre = np.array([1.1, 2.0], dtype=np.float32)  # 2.2 steps: rounds to 2, nowhere near a tie
    want = np.array([1.0, 2.0], dtype=np.float32)
    assert "away from a rounding tie" in compare_one("Quant_0", pre, np.array([1.5, 2.0], np.float32), scale, want, _check())
    assert "differs by 2 steps" in compare_one("Quant_0", pre, np.array([2.0, 2.0], np.float32), scale, want, _check())


@pytest.fixture(scope="module")
def exported(trained_digits_cnn, digits_splits, tmp_path_factory):
    q = quantize(trained_digits_cnn)
    calibrate(q, DataLoader(digits_splits.train, batch_size=64), train_mode=False)
    x = digits_splits.test.tensors[0][:2]
    path = export_qonnx(q, x[:1], tmp_path_factory.mktemp("verify") / "m.onnx")
    return q, x, path


def _corrupt(path, out, change) -> str:
    model = ModelWrapper(str(path))
    change(model)
    model.save(str(out))
    return str(out)


def test_quantizer_by_quantizer_check_catches_a_wrong_layer(exported, tmp_path):
    q, x, path = exported

    def scale_a_conv_weight(model):
        quant = next(n for n in model.graph.node if n.op_type == "Quant" and model.get_initializer(n.input[0]) is not None)
        weight = model.get_initializer(quant.input[0])
        model.set_initializer(quant.input[0], weight * 1.3)

    check = verify_qonnx(q, _corrupt(path, tmp_path / "w.onnx", scale_a_conv_weight), x)
    assert not check.end_to_end_passed and not check.passed
    assert check.quantizers >= 1 and "steps" in check.mismatch, check


def test_quantizer_by_quantizer_check_catches_a_wrong_scale(exported, tmp_path):
    q, x, path = exported

    def scale_an_activation(model):
        quants = [n for n in model.graph.node if n.op_type == "Quant" and model.get_initializer(n.input[0]) is None]
        middle = quants[len(quants) // 2]
        model.set_initializer(middle.input[1], model.get_initializer(middle.input[1]) * 1.5)

    check = verify_qonnx(q, _corrupt(path, tmp_path / "s.onnx", scale_an_activation), x)
    assert not check.passed and "scale" in check.mismatch, check
