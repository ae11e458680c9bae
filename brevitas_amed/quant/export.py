"""QONNX export of a quantized model, and its verification by executing it with qonnx."""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from brevitas_amed.quant.model import QuantizedModel

# onnxruntime 1.31+ with onnx 1.23: qonnx's executor builds one-node models at onnx's newest IR
# version, which onnxruntime refuses ("Unsupported model IR version"). IR 10 runs everywhere.
_EXEC_IR_VERSION = 10


@dataclasses.dataclass
class ExportCheck:
    """Result of executing the exported QONNX graph against PyTorch on the same input."""

    path: str
    max_abs_diff: float
    output_range: float
    tolerance: float
    same_predictions: bool
    output_step: float | None = None  # scale of the graph's output quantizer, when it has one

    @property
    def passed(self) -> bool:
        # Float arithmetic in another order can land a value on the other side of a rounding
        # boundary: one step of the output quantizer is a faithful export, more is not.
        allowed = self.tolerance * max(self.output_range, 1.0)
        if self.output_step is not None:
            allowed = max(allowed, self.output_step * 1.001)
        return self.max_abs_diff <= allowed and self.same_predictions


@contextlib.contextmanager
def _executable_ir_version() -> Iterator[None]:
    import qonnx.core.onnx_exec as onnx_exec

    original = onnx_exec.qonnx_make_model

    def make_model(graph, **kwargs):
        model = original(graph, **kwargs)
        model.ir_version = min(model.ir_version, _EXEC_IR_VERSION)
        return model

    onnx_exec.qonnx_make_model = make_model
    try:
        yield
    finally:
        onnx_exec.qonnx_make_model = original


def export_qonnx(qmodel: QuantizedModel, example: torch.Tensor, path: str | Path) -> Path:
    """Export to a cleaned-up QONNX file (per-node bit widths; FINN's input format).

    Args:
        qmodel: The quantized model (exported in eval mode, its current bits).
        example: One input batch (batch size 1 is enough).
        path: Where to write the ``.onnx`` file.

    Returns:
        The path written.
    """
    from brevitas.export import export_qonnx as brevitas_export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = qmodel.training
    qmodel.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            brevitas_export_qonnx(qmodel.model, args=example, export_path=str(path), dynamo=False)
    finally:
        qmodel.train(was_training)
    model = cleanup_model(ModelWrapper(str(path)))
    model.save(str(path))
    return path


def verify_qonnx(qmodel: QuantizedModel, path: str | Path, inputs: torch.Tensor, tolerance: float = 1e-3) -> ExportCheck:
    """Execute the QONNX graph with qonnx on ``inputs`` (one sample at a time) and compare."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    model = ModelWrapper(str(path))
    in_name, out_name = model.graph.input[0].name, model.graph.output[0].name
    qmodel.eval()
    with torch.no_grad():
        expected = qmodel(inputs).numpy()
    got = []
    with _executable_ir_version():
        for i in range(inputs.shape[0]):
            got.append(execute_onnx(model, {in_name: inputs[i:i + 1].numpy()})[out_name])
    got_arr = np.concatenate(got, axis=0).reshape(expected.shape)
    producer = model.find_producer(out_name)
    step = None
    if producer is not None and producer.op_type == "Quant":
        scale = model.get_initializer(producer.input[1])
        step = float(np.max(scale)) if scale is not None else None
    diff = float(np.abs(got_arr - expected).max())
    span = float(expected.max() - expected.min())
    same = bool((got_arr.argmax(axis=1) == expected.argmax(axis=1)).all())
    return ExportCheck(str(path), diff, span, tolerance, same, step)
