"""FINN build steps that brevitas-amed ships for what FINN's default steps do not take.

Runs inside the FINN environment only (imports ``finn``); the main package never imports it.
Each step has FINN's step signature ``(model, cfg) -> model``, so it can stand in a FINN
``DataflowBuildConfig.steps`` list next to FINN's own steps.

Why they are needed, on brevitas-amed's QONNX exports:

* residual forks: the activation quantizer whose output feeds both a block's convolution and
  the skip ``Add`` leaves its scale ``Mul`` on a fork. FINN's ``Streamline`` skips fork nodes, so
  the convolution gets float input and the ``Add`` stays float. FINN's ``StreamlinePlus`` (its
  newer, exhaustive streamlining for residual topologies) moves the scale past the fork and
  turns the block into integer ``DuplicateStreams`` + ``ElementwiseAdd`` + thresholds.
* pooling heads: after streamlining, a global average pool leaves a float ``Mul`` (1/(H*W)) and a
  ``Flatten`` between the last thresholds and the classifier. Converting the pool to FINN's
  ``GlobalAccPool`` (an integer sum) plus a scalar ``Mul`` and streamlining again absorbs that
  ``Mul`` into the classifier's input thresholds; the NHWC->NCHW ``Transpose`` left on the
  pooled 1x1 tensor is dropped (same element order), so the ``Flatten`` is removed too.
* bias quantizers: a convolution's bias ``Quant`` with a 0-d zero point stops FINN's QONNX
  conversion (``step_amed_bias_quant_shapes``).
* run time: ``qonnx_speed.use_linear_graph_helpers`` makes qonnx's whole-graph helpers linear
  (same graphs); MobileNetV2's streamlining went from over 30 minutes to about 8.
"""

from __future__ import annotations

import json

from qonnx.transformation.general import GiveUniqueNodeNames, RemoveUnusedTensors
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

import finn.transformation.streamline.absorb as absorb
from finn.transformation.fpgadataflow.convert_to_hw.global_acc_pool import InferGlobalAccPoolLayer
from finn.transformation.move_reshape import RemoveCNVtoFCFlatten
from finn.transformation.streamline import Streamline
from finn.transformation.streamline.reorder import MakeMaxPoolNHWC
from finn.transformation.streamline.streamline_plus import StreamlinePlus


def step_amed_bias_quant_shapes(model, cfg):
    """Give the 0-d scale/zero point of a convolution's bias ``Quant`` the shape (1,), as FINN's
    ``step_qonnx_to_finn`` expects: its ``ExtractBiasFromConv`` (qonnx) reshapes every such
    parameter whose shape is not (1,) to the bias shape, which fails for a 0-d zero point
    ("cannot reshape array of size 1 into shape (1,C,1,1)"; MobileNetV3's squeeze-and-excitation
    convolutions). Same values, so the same model."""
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 3:
            continue
        quant = model.find_producer(node.input[2])
        if quant is None or quant.op_type not in ("Quant", "IntQuant", "BipolarQuant"):
            continue
        for name in quant.input[1:3]:
            value = model.get_initializer(name)
            if value is not None and value.ndim == 0:
                model.set_initializer(name, value.reshape(1))
    return model


def step_amed_streamline(model, cfg):
    """FINN's ``step_streamline`` with its second ``Streamline`` pass (after convolutions are
    lowered to Im2Col + MatMul) replaced by ``StreamlinePlus``, which also moves scales past
    forks, Im2Col and residual adds. (StreamlinePlus in both passes gives the same graph on the
    digits models and costs twice the time: FINN spends ~20 s of CPU in it per pass.)"""
    model = model.transform(absorb.AbsorbScalarBiasIntoMultiThreshold())
    model = model.transform(Streamline())
    if model.get_nodes_by_op_type("Conv"):
        model = model.transform(LowerConvsToMatMul())
        model = model.transform(MakeMaxPoolNHWC())
        model = model.transform(absorb.AbsorbTransposeIntoMultiThreshold())
        model = model.transform(MakeMaxPoolNHWC())
        model = model.transform(absorb.AbsorbConsecutiveTransposes())
    model = model.transform(StreamlinePlus())  # after lowering: forks, Im2Col, residual adds
    model = model.transform(absorb.AbsorbScalarMulAddIntoTopK())
    model = model.transform(InferDataLayouts())
    model = model.transform(RemoveUnusedTensors())
    return model


def drop_pooled_transposes(model):
    """Remove NHWC->NCHW ``Transpose`` nodes on pooled tensors (N, 1, 1, C) that only feed a
    ``Flatten``: with one pixel the two layouts hold the same order, and FINN then drops the
    lone ``Flatten`` between hardware layers (``RemoveCNVtoFCFlatten``)."""
    for node in list(model.graph.node):
        if node.op_type != "Transpose":
            continue
        perm = [a for a in node.attribute if a.name == "perm"]
        shape = model.get_tensor_shape(node.input[0])
        consumers = model.find_consumers(node.output[0]) or []
        if (perm and list(perm[0].ints) == [0, 3, 1, 2] and shape is not None and len(shape) == 4
                and shape[1] == shape[2] == 1 and len(consumers) == 1 and consumers[0].op_type == "Flatten"):
            consumers[0].input[0] = node.input[0]
            model.graph.node.remove(node)
    return model


def step_amed_integer_io(model, cfg):
    """Leave the input quantizer and the output scale to the host, so the accelerator reads and
    writes integers: the ``MultiThreshold`` that quantizes the float graph input is removed (the
    input is then annotated with its integer type: the host feeds ``clip(round(x / scale))`` of the
    exported input quantizer), and a trailing ``Mul`` by one positive constant is removed and its value
    kept in the model's metadata ``amed_output_scale`` (the host multiplies by it; a positive scalar
    leaves the arg-max unchanged; a per-channel or negative scale stays on the accelerator)."""
    inp = model.graph.input[0].name
    first = model.find_consumers(inp) or []
    if (len(first) == 1 and first[0].op_type == "MultiThreshold"
            and not model.get_tensor_datatype(inp).is_integer()):
        node = first[0]
        dtype = model.get_tensor_datatype(node.output[0])
        for consumer in model.find_consumers(node.output[0]) or []:
            for i, name in enumerate(consumer.input):
                if name == node.output[0]:
                    consumer.input[i] = inp
        model.graph.node.remove(node)
        model.set_tensor_datatype(inp, dtype)
        model.set_metadata_prop("amed_input_dtype", dtype.name)
    out = model.graph.output[0].name
    last = model.find_producer(out)
    if last is not None and last.op_type == "Mul":
        scale = model.get_initializer(last.input[1])
        producer = model.find_producer(last.input[0])
        # only a single positive scalar: it leaves the arg-max, and so the host's answer, unchanged
        if (scale is not None and scale.size == 1 and float(scale.reshape(-1)[0]) > 0 and producer is not None
                and model.get_tensor_datatype(last.input[0]).is_integer()):
            producer.output[0] = out  # reconnect the graph output to the integer tensor
            model.graph.node.remove(last)
            model.set_tensor_datatype(out, model.get_tensor_datatype(last.input[0]))
            model.set_metadata_prop("amed_output_scale", json.dumps(scale.astype(float).tolist()))
    model = model.transform(InferShapes())
    model = model.transform(InferDataTypes())
    return model


def step_amed_pool_head(model, cfg):
    """Global average pool -> FINN ``GlobalAccPool`` + scalar ``Mul``; streamline again so the
    ``Mul`` and the ``Flatten`` after it leave the dataflow part."""
    if not model.get_nodes_by_op_type("GlobalAveragePool"):
        return model
    model = model.transform(InferShapes())
    model = model.transform(InferDataTypes())
    model = model.transform(InferDataLayouts())
    model = model.transform(InferGlobalAccPoolLayer())
    model = model.transform(RemoveCNVtoFCFlatten())
    model = model.transform(StreamlinePlus())
    model = model.transform(absorb.AbsorbConsecutiveTransposes())
    model = drop_pooled_transposes(model)
    model = model.transform(GiveUniqueNodeNames())
    model = model.transform(InferDataLayouts())
    model = model.transform(InferDataTypes())
    model = model.transform(RemoveUnusedTensors())
    return model
