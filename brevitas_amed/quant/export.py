"""QONNX export of a quantized model, and its verification by executing it with qonnx."""

from __future__ import annotations

import contextlib
import copy
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


def static_sizes(graph: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """A copy of ``graph`` whose tensor sizes are the constants they take on ``example``.

    A channel shuffle reads tensor sizes in ``forward`` and ``torch.chunk`` computes its pieces
    from them; exported as they are, they become chains of ``Shape``/``Gather``/``Div`` nodes that
    qonnx's cleanup folds one at a time (minutes for ShuffleNetV2). The export is for one input
    size anyway, so ``x.size()`` becomes a constant and a chunk a split into constant sizes.
    """
    from brevitas.backport.fx.interpreter import Interpreter
    from brevitas.backport.fx.node import map_arg

    def is_sized(n) -> bool:
        return (n.op == "call_method" and n.target == "size") or (n.op == "call_function" and n.target is torch.chunk)

    graph = copy.deepcopy(graph)
    if not any(is_sized(n) for n in graph.graph.nodes):
        return graph
    sizes: dict[str, object] = {}

    class _Recorder(Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if is_sized(n):
                sizes[n.name] = tuple(result) if isinstance(result, torch.Size) else result
            return result

    with torch.no_grad():
        _Recorder(graph).run(example)
    for node in list(graph.graph.nodes):
        if node.name not in sizes:
            continue
        if node.op == "call_function":  # torch.chunk(x, n, dim) -> torch.split(x, [sizes], dim)
            dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 0)
            node.target = torch.split
            node.args, node.kwargs = (node.args[0], [int(p.shape[dim]) for p in sizes[node.name]]), {"dim": dim}
            continue
        for user in list(node.users):
            user.args = map_arg(user.args, lambda a, node=node: sizes[node.name] if a is node else a)
            user.kwargs = map_arg(user.kwargs, lambda a, node=node: sizes[node.name] if a is node else a)
        graph.graph.erase_node(node)
    graph.recompile()
    return graph


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

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = qmodel.training
    qmodel.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            brevitas_export_qonnx(static_sizes(qmodel.model, example), args=example, export_path=str(path), dynamo=False)
    finally:
        qmodel.train(was_training)
    model = clean_model(ModelWrapper(str(path)))
    model.save(str(path))
    return path


def clean_model(model):
    """qonnx's ``cleanup_model`` transformations at linear cost, for graphs of any size.

    ``cleanup_model`` runs qonnx's graph tidy-up after each of its eight transformations and
    renames every tensor with a whole-graph scan each (minutes for a DenseNet); here the tidy-up
    runs once and only the graph's input and output get readable names (``global_in``,
    ``global_out``). The graph computes the same thing.
    """
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (GiveUniqueNodeNames, GiveUniqueParameterTensors,
                                              RemoveStaticGraphInputs, RemoveUnusedTensors)
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

    for node in model.graph.node:
        if node.op_type in ("Quant", "Trunc", "BipolarQuant"):
            node.domain = "qonnx.custom_op.general"  # as cleanup_model does
    keep = ["Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear"]
    for step in (InferShapes(), GiveUniqueParameterTensors(), FoldConstants(exclude_op_types=keep),
                 FoldTransposeIntoQuantInit(), RemoveUnusedTensors(), RemoveStaticGraphInputs(),
                 GiveUniqueNodeNames()):
        model = model.transform(step, cleanup=False)
    model = model.cleanup()
    for tensors, name in ((model.graph.input, "global_in"), (model.graph.output, "global_out")):
        if len(tensors) == 1 and tensors[0].name != name:
            model.rename_tensor(tensors[0].name, name)
    return model


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
