"""Verification of a QONNX export by executing it with qonnx against the PyTorch model.

Two runs of the graph on each input:

1. **End to end** (reported: ``max_abs_diff``, ``same_predictions``, ``end_to_end_passed``). The
   graph runs free; its output should differ from PyTorch's by at most one step of the output
   quantizer (or ``tolerance`` of the output range when the output is not quantized), with the
   same predicted class. This is not the pass criterion, for two reasons. In a deep network
   float32 arithmetic in another order (PyTorch's convolution against onnxruntime's) lands a few
   values on the other side of a rounding tie; the flipped integer is an honest input of the
   next layers and the differences grow (seen: ResNet-101, ResNeXt-50, RegNet-8GF, VGG-11,
   DenseNet-161 miss by 2 to 40 output steps, the first difference one integer at exactly
   ``k + 0.5`` steps). And a real fault can hide in it: an activation quantizer exported with
   1.5 times its scale still came within one output step on the digits CNN.
2. **Quantizer by quantizer** (teacher-forced; the pass criterion). The graph runs node by node;
   after every activation ``Quant`` node its output is compared with the output of the matching
   Brevitas quantizer and then *replaced* by it, so that each quantizer is judged on the same
   integer inputs as PyTorch. The export passes when, at every quantizer, the scale equals
   PyTorch's and each integer equals PyTorch's or differs by exactly one step at a value whose
   pre-rounding position lies within :data:`TIE_WINDOW` steps of a rounding tie (``k + 0.5``): a
   rounding flip, not a different computation; a float (unquantized) graph output must match
   within ``tolerance`` of its range. A wrong scale, bit width, clip or layer fails with a scale
   mismatch, differences of several steps or flips far from a tie. The counts (flipped integers
   of all compared, largest distance of a flip from its tie) are in :class:`ExportCheck`.

Graph ``Quant`` nodes are matched with Brevitas quantizer calls by shape and scale (the graph's
node order need not be PyTorch's call order); among several calls of one shape and scale (the
inputs of a residual add or a concatenation share a quantizer) the closest one is taken. A node
with no such call, or a call left without a node, fails the check.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from brevitas_amed.quant.model import QuantizedModel

# onnxruntime 1.31+ with onnx 1.23: qonnx's executor builds one-node models at onnx's newest IR
# version, which onnxruntime refuses ("Unsupported model IR version"). IR 10 runs everywhere.
EXEC_IR_VERSION = 10
# How far from a rounding tie, in quantizer steps, a value may be for a one-step flip to count as
# float noise. Float32 accumulation differences measured in the zoo are below 1e-3 steps.
TIE_WINDOW = 0.01


@dataclasses.dataclass
class ExportCheck:
    """Result of executing the exported QONNX graph against PyTorch on the same inputs.

    Attributes:
        max_abs_diff / output_range / same_predictions: End-to-end (free-running) comparison,
            reported but not the pass criterion (see the module docstring).
        output_step: Scale of the graph's output quantizer, when it has one.
        quantizers: Activation quantizer outputs compared, over all inputs.
        flipped: Integers that differ from PyTorch's by one step at a rounding tie, of ``elements``.
        max_step_diff: Largest difference at any quantizer, in its steps.
        max_tie_distance: Largest distance from a tie (in steps) of a flipped value.
        mismatch: Why the quantizer-by-quantizer check failed, if it did.
    """

    path: str
    max_abs_diff: float
    output_range: float
    tolerance: float
    same_predictions: bool
    output_step: float | None = None
    quantizers: int = 0
    elements: int = 0
    flipped: int = 0
    max_step_diff: float = 0.0
    max_tie_distance: float = 0.0
    mismatch: str = ""

    @property
    def end_to_end_passed(self) -> bool:
        allowed = self.tolerance * max(self.output_range, 1.0)
        if self.output_step is not None:
            allowed = max(allowed, self.output_step * 1.001)
        return self.max_abs_diff <= allowed and self.same_predictions

    @property
    def passed(self) -> bool:
        if self.quantizers == 0 and not self.mismatch:  # nothing quantized: end to end is all there is
            return self.end_to_end_passed
        return not self.mismatch

    @property
    def flipped_fraction(self) -> float:
        return self.flipped / self.elements if self.elements else 0.0


@contextlib.contextmanager
def executable_ir_version() -> Iterator[None]:
    """Within this block, qonnx's one-node models carry IR version :data:`EXEC_IR_VERSION`."""
    import qonnx.core.onnx_exec as onnx_exec

    original = onnx_exec.qonnx_make_model

    def make_model(graph, **kwargs):
        model = original(graph, **kwargs)
        model.ir_version = min(model.ir_version, EXEC_IR_VERSION)
        return model

    onnx_exec.qonnx_make_model = make_model
    try:
        yield
    finally:
        onnx_exec.qonnx_make_model = original


def verify_qonnx(qmodel: QuantizedModel, path: str | Path, inputs: torch.Tensor, tolerance: float = 1e-3) -> ExportCheck:
    """Execute the QONNX graph with qonnx on ``inputs`` (one sample at a time) and compare.

    Args:
        qmodel: The model that was exported, at the bits it was exported with.
        path: The ``.onnx`` file from :func:`~brevitas_amed.quant.export_qonnx`.
        inputs: A batch of inputs.
        tolerance: Allowed end-to-end difference, relative to the output range, for a graph whose
            output is not quantized.

    Returns:
        The :class:`ExportCheck`; its ``passed`` applies the criterion of this module's docstring.
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    model = ModelWrapper(str(path))
    in_name, out_name = model.graph.input[0].name, model.graph.output[0].name
    qmodel.eval()
    with torch.no_grad():
        expected = qmodel(inputs).numpy()
    with executable_ir_version():
        got = [execute_onnx(model, {in_name: inputs[i:i + 1].numpy()})[out_name] for i in range(inputs.shape[0])]
    got_arr = np.concatenate(got, axis=0).reshape(expected.shape)
    producer = model.find_producer(out_name)
    step = None
    if producer is not None and producer.op_type == "Quant":
        scale = model.get_initializer(producer.input[1])
        step = float(np.max(scale)) if scale is not None else None
    check = ExportCheck(str(path), float(np.abs(got_arr - expected).max()), float(expected.max() - expected.min()),
                        tolerance, bool((got_arr.argmax(axis=1) == expected.argmax(axis=1)).all()), step)
    for i in range(inputs.shape[0]):
        compare_quantizers(qmodel, model, inputs[i:i + 1], check)
        if check.mismatch:
            break
    return check


def activation_quant_calls(qmodel: QuantizedModel, x: torch.Tensor) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(quantizer path, output value, scale)`` of every enabled activation quantizer call, in order."""
    from brevitas.proxy.runtime_quant import ActQuantProxyFromInjectorBase

    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    handles = []
    for name, module in qmodel.model.named_modules():
        if isinstance(module, ActQuantProxyFromInjectorBase):
            def hook(module, _inputs, out, name=name):
                if module.is_quant_enabled and getattr(out, "scale", None) is not None:
                    calls.append((name, out.value.detach(), out.scale.detach()))
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            qmodel(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def compare_quantizers(qmodel: QuantizedModel, model, x: torch.Tensor, check: ExportCheck) -> None:
    """Run ``model`` node by node on ``x``, comparing and then forcing every activation quantizer.

    Updates ``check`` in place (counts, largest differences, ``mismatch`` on the first failure).
    """
    from qonnx.core.onnx_exec import execute_node
    from qonnx.util.basic import get_preferred_qonnx_opset

    pending = activation_quant_calls(qmodel, x)
    context = model.make_empty_exec_context()
    context[model.graph.input[0].name] = x.numpy()
    opsets = model.get_opset_imports()
    with executable_ir_version():
        for node in model.graph.node:
            execute_node(node, context, model.graph, opsets.get(node.domain, get_preferred_qonnx_opset()))
            if node.op_type != "Quant" or model.get_initializer(node.input[0]) is not None:
                continue  # weights and biases are constants; only activations are compared
            got, onnx_scale = context[node.output[0]], model.get_initializer(node.input[1])
            candidates = [i for i, (_, value, scale) in enumerate(pending)
                          if tuple(value.shape) == got.shape and onnx_scale is not None and same_scale(onnx_scale, scale)]
            if not candidates:
                check.mismatch = f"{node.name}: no PyTorch activation quantizer of shape {got.shape} and its scale"
                return
            best = min(candidates, key=lambda i: float(np.abs(pending[i][1].numpy() - got).max()))
            name, value, scale = pending.pop(best)
            check.mismatch = compare_one(f"{node.name} ({name})", context[node.input[0]], got, onnx_scale, value.numpy(), check)
            if check.mismatch:
                return
            context[node.output[0]] = value.numpy()
    if pending:
        check.mismatch = f"{len(pending)} PyTorch activation quantizer calls have no Quant node (first: {pending[0][0]})"
        return
    out_name = model.graph.output[0].name
    producer = model.find_producer(out_name)
    if producer is None or producer.op_type != "Quant":  # a float output: compare it on the forced inputs
        with torch.no_grad():
            want = qmodel(x).numpy()
        diff = float(np.abs(context[out_name].reshape(want.shape) - want).max())
        if diff > check.tolerance * max(float(want.max() - want.min()), 1.0):
            check.mismatch = f"float output differs by {diff:.3g} from PyTorch on the same inputs"


def same_scale(onnx_scale: np.ndarray, scale: torch.Tensor) -> bool:
    a, b = np.asarray(onnx_scale, dtype=np.float64).reshape(-1), scale.double().numpy().reshape(-1)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-5, atol=0))


def compare_one(where: str, pre: np.ndarray, got: np.ndarray, onnx_scale: np.ndarray, want: np.ndarray,
                check: ExportCheck) -> str:
    """Compare one quantizer's integers (in ``check``'s counts); returns why it fails, or ``""``."""
    onnx_scale = np.asarray(onnx_scale, dtype=np.float64)
    steps = np.abs(got.astype(np.float64) - want.astype(np.float64)) / onnx_scale
    position = pre.astype(np.float64) / onnx_scale
    tie_distance = np.abs(np.abs(position - np.floor(position)) - 0.5)
    flips = steps > 0.5
    check.quantizers += 1
    check.elements += got.size
    check.flipped += int(flips.sum())
    check.max_step_diff = max(check.max_step_diff, float(steps.max()))
    if flips.any():
        check.max_tie_distance = max(check.max_tie_distance, float(tie_distance[flips].max()))
    if steps.max() > 1.5:
        return f"{where}: differs by {steps.max():.0f} steps from PyTorch on the same inputs"
    if flips.any() and tie_distance[flips].max() > TIE_WINDOW:
        return f"{where}: a one-step difference {tie_distance[flips].max():.3f} steps away from a rounding tie"
    return ""
