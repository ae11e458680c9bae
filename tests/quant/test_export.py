"""QONNX export executed with qonnx against PyTorch: the check passes and can fail."""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper
from torch.utils.data import DataLoader

from brevitas_amed.quant import calibrate, export_qonnx, quantize, verify_qonnx


def test_export_matches_pytorch_and_detects_a_different_model(trained_digits_cnn, digits_splits, tmp_path):
    q = quantize(trained_digits_cnn)
    calibrate(q, DataLoader(digits_splits.train, batch_size=64), train_mode=False)
    q.set_bits({"conv2.0": (3, 5), "block_a.0": (2, 4)})
    x = digits_splits.test.tensors[0][:6]
    path = export_qonnx(q, x[:1], tmp_path / "m.onnx")
    model = ModelWrapper(str(path))
    quant_bits = {float(model.get_initializer(n.input[3])) for n in model.graph.node if n.op_type == "Quant"}
    assert {2.0, 3.0, 4.0, 5.0, 8.0} <= quant_bits  # mixed precision carried per node
    good = verify_qonnx(q, path, x)
    assert good.passed and good.same_predictions, good
    assert good.output_step is not None and good.max_abs_diff <= good.output_step * 1.001
    q.set_uniform(2)  # the PyTorch model no longer is what was exported
    bad = verify_qonnx(q, path, x)
    assert not bad.passed and bad.max_abs_diff > good.max_abs_diff
