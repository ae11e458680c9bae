"""QONNX export of a quantized model (verified by :mod:`brevitas_amed.quant.verify`)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch

from brevitas_amed.quant.model import QuantizedModel


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
