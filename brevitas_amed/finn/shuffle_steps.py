"""FINN build steps for ShuffleNetV2: channel split (``chunk`` -> ``Split``), branches,
concatenation and channel shuffle (``Reshape -> Transpose -> Reshape``).

Runs inside the FINN environment only (imports ``finn``), like ``finn_steps``. FINN 1.6.1 has
hardware layers for all of it (``StreamingSplit``, ``StreamingConcat``, ``InnerShuffle``), but only
on the channels-last stream (split and concatenation on the last axis, a shuffle that swaps the
two innermost axes), and brevitas-amed's export is NCHW. Without these steps the flow stops at
``step_qonnx_to_finn``, and after that at ``step_create_dataflow_partition``. In the flow's order:

* ``step_amed_relu_signed_quant`` (before ``step_qonnx_to_finn``): a concatenation's inputs share
  one Brevitas quantizer; when one input may be negative (the channel half a block passes
  through) it is signed, and the ReLU ending the other branch then feeds a signed ``Quant``,
  which FINN's QONNX conversion refuses ("FINN only supports unsigned and non-narrow Quant nodes
  for Relu activations"). On a ReLU's non-negative output the signed ``b``-bit quantizer equals
  the unsigned ``b - 1``-bit one (same scale, same values).
* ``step_amed_shuffle_layouts`` (after ``step_amed_pool_head``): FINN's streamlining already
  moves the scales past ``Split`` and ``Concat`` (both concatenated inputs carry the shared
  quantizer's scale, so the two ``Mul`` are equal and move as one) but leaves the NCHW islands
  between the lowered convolutions' transposes. The channel shuffle is rewritten as the same
  channel permutation on the channels-last tensor, and the NHWC->NCHW transposes are moved
  forward past shuffles, concatenations, splits, forks and thresholds until they cancel.
* ``step_amed_shuffle_to_hw`` (after ``step_specialize_layers``): each shuffle FINN's
  ``step_convert_to_hw`` made becomes FINN's ``InnerShuffle`` layer, as FINN's own
  ``step_transpose_decomposition`` does, so that it appears in the estimates.

Every step leaves the numbers the graph computes unchanged (the runner's streamlined check and
``tests/finn/test_shuffle_steps.py``).
"""

from __future__ import annotations

import numpy as np
from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
from finn.transformation.fpgadataflow.transpose_decomposition import InferInnerOuterShuffles, ShuffleDecomposition
from finn.transformation.move_reshape import RemoveCNVtoFCFlatten
from finn.transformation.streamline.absorb import AbsorbConsecutiveTransposes, AbsorbTransposeIntoMultiThreshold
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.general import GiveUniqueNodeNames, RemoveUnusedTensors, SortGraph
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import get_by_name

NHWC_TO_NCHW = [0, 3, 1, 2]  # what a lowered convolution's output goes through to reach NCHW nodes


def step_amed_relu_signed_quant(model: ModelWrapper, cfg) -> ModelWrapper:
    """Rewrite every ``Relu -> Quant(signed, non-narrow, b bits, zero point 0)`` as the unsigned
    ``b - 1``-bit ``Quant``: on non-negative inputs ``clip(round(x / s), -2^(b-1), 2^(b-1) - 1)``
    is ``clip(round(x / s), 0, 2^(b-1) - 1)``. Same values, so the same model; FINN's QONNX
    conversion then turns it into unsigned thresholds like any ReLU quantizer.

    Not where the quantizer feeds a ``Concat`` as its first input and another input stays signed:
    qonnx gives a ``Concat`` the datatype of its first input, which would then be unsigned while
    the concatenation holds negative values (torchvision's ShuffleNetV2 puts the signed half
    first). That quantizer stays signed, and FINN's conversion refuses it with its own message."""
    rewrite = {}
    for node in model.get_nodes_by_op_type("Quant"):
        producer = model.find_producer(node.input[0])
        signed, narrow = get_by_name(node.attribute, "signed"), get_by_name(node.attribute, "narrow")
        if producer is None or producer.op_type != "Relu" or signed is None or not signed.i or (narrow and narrow.i):
            continue
        zero_point, bits = model.get_initializer(node.input[2]), model.get_initializer(node.input[3])
        if zero_point is None or bits is None or np.any(zero_point != 0) or float(bits) < 2:
            continue
        rewrite[node.output[0]] = (node, signed, bits)
    for concat in model.get_nodes_by_op_type("Concat"):
        if concat.input[0] in rewrite and not all(name in rewrite for name in concat.input):
            del rewrite[concat.input[0]]
    for node, signed, bits in rewrite.values():
        name = model.make_new_valueinfo_name()
        model.set_initializer(name, np.asarray(bits - 1, dtype=np.float32).reshape(np.shape(bits)))
        node.input[3] = name  # a tensor of its own: the bit width may be shared with other quantizers
        signed.i = 0
    return model


def perm_of(node) -> list[int] | None:
    """A ``Transpose``'s permutation; None for any other node."""
    attr = get_by_name(node.attribute, "perm")
    return list(attr.ints) if node.op_type == "Transpose" and attr is not None else None


def only_consumer(model: ModelWrapper, tensor: str):
    """The node reading ``tensor`` when exactly one does."""
    consumers = model.find_consumers(tensor) or []
    return consumers[0] if len(consumers) == 1 else None


def to_nchw_transpose(model: ModelWrapper, tensor: str):
    """The ``Transpose`` (NHWC -> NCHW) producing ``tensor`` when nothing else reads its output."""
    node = model.find_producer(tensor)
    if node is None or perm_of(node) != NHWC_TO_NCHW or only_consumer(model, node.output[0]) is None:
        return None
    return node


def add_transpose_after(model: ModelWrapper, node, index: int, perm: list[int]) -> None:
    """Let ``node`` write a fresh tensor at output ``index`` and a new ``Transpose(perm)`` turn it
    into the tensor it wrote before."""
    fresh = model.make_new_valueinfo_name()
    transpose = helper.make_node("Transpose", [fresh], [node.output[index]], perm=perm)
    node.output[index] = fresh
    model.graph.node.insert(list(model.graph.node).index(node) + 1, transpose)


def channel_shuffle_to_nhwc(model: ModelWrapper) -> bool:
    """``Transpose(NHWC->NCHW) -> Reshape(N, c1..ck, H, W) -> Transpose(0, p.., k+1, k+2) ->
    Reshape(N, C, H, W)`` (a permutation of the channels only, e.g. ShuffleNet's channel shuffle)
    becomes the same channel permutation on the channels-last tensor, ``Reshape(N, H, W, c1..ck)
    -> Transpose(0, 1, 2, p'..) -> Reshape(N, H, W, C)``, followed by the ``Transpose`` to NCHW.
    Every element lands where it did before."""
    for first in model.get_nodes_by_op_type("Transpose"):
        if perm_of(first) != NHWC_TO_NCHW:
            continue
        split = only_consumer(model, first.output[0])
        shuffle = only_consumer(model, split.output[0]) if split is not None and split.op_type == "Reshape" else None
        join = only_consumer(model, shuffle.output[0]) if shuffle is not None and perm_of(shuffle) else None
        if join is None or join.op_type != "Reshape" or model.get_initializer(split.input[1]) is None:
            continue
        n, c, h, w = model.get_tensor_shape(first.output[0])
        factors = [int(v) for v in model.get_initializer(split.input[1])]
        perm, out = perm_of(shuffle), model.get_initializer(join.input[1])
        k = len(factors) - 3
        if (k < 1 or factors[0] != n or factors[-2:] != [h, w] or int(np.prod(factors[1:-2])) != c
                or perm[0] != 0 or perm[-2:] != [k + 1, k + 2] or out is None or [int(v) for v in out] != [n, c, h, w]
                or len(model.find_consumers(split.input[1]) or []) != 1
                or len(model.find_consumers(join.input[1]) or []) != 1):  # shape tensors shared elsewhere
            continue
        model.set_initializer(split.input[1], np.asarray([n, h, w, *factors[1:-2]], dtype=np.int64))
        shuffle.attribute.remove(get_by_name(shuffle.attribute, "perm"))
        shuffle.attribute.append(helper.make_attribute("perm", [0, 1, 2] + [p + 2 for p in perm[1:-2]]))
        model.set_initializer(join.input[1], np.asarray([n, h, w, c], dtype=np.int64))
        split.input[0] = first.input[0]
        model.graph.node.remove(first)
        for info in [v for v in model.graph.value_info if v.name in (split.output[0], shuffle.output[0])]:
            model.graph.value_info.remove(info)  # their shapes change: inferred again
        add_transpose_after(model, join, 0, NHWC_TO_NCHW)
        return True
    return False


def channel_axis(model: ModelWrapper, node) -> bool:
    """Whether a ``Split``/``Concat`` works on axis 1 of a 4-d (NCHW) tensor."""
    axis = get_by_name(node.attribute, "axis")
    shape = model.get_tensor_shape(node.input[0])
    return axis is not None and shape is not None and len(shape) == 4 and axis.i in (1, -3)


def transposes_past_concat(model: ModelWrapper) -> bool:
    """A channel ``Concat`` whose inputs all come from NHWC->NCHW transposes concatenates the
    channels-last tensors on their last axis instead, then transposes once."""
    for node in model.get_nodes_by_op_type("Concat"):
        producers = [to_nchw_transpose(model, i) for i in node.input]
        if not channel_axis(model, node) or any(p is None for p in producers):
            continue
        for i, producer in enumerate(producers):
            node.input[i] = producer.input[0]
            model.graph.node.remove(producer)
        get_by_name(node.attribute, "axis").i = 3
        add_transpose_after(model, node, 0, NHWC_TO_NCHW)
        return True
    return False


def transposes_past_split(model: ModelWrapper) -> bool:
    """A channel ``Split`` of an NHWC->NCHW transpose splits the channels-last tensor on its last
    axis instead, then transposes each part."""
    for node in model.get_nodes_by_op_type("Split"):
        producer = to_nchw_transpose(model, node.input[0])
        if producer is None or not channel_axis(model, node):
            continue
        node.input[0] = producer.input[0]
        model.graph.node.remove(producer)
        get_by_name(node.attribute, "axis").i = 3
        for i in range(len(node.output)):
            add_transpose_after(model, node, i, NHWC_TO_NCHW)
        return True
    return False


def pooled_flatten(model: ModelWrapper) -> None:
    """``Transpose(NHWC->NCHW) -> Reshape(N, C)`` on a pooled (N, 1, 1, C) tensor (``x.mean([2, 3])``
    in torchvision's ShuffleNetV2) becomes one ``Flatten``: with one pixel both layouts hold the
    same order, and FINN removes a lone ``Flatten`` between hardware layers."""
    for node in list(model.get_nodes_by_op_type("Reshape")):
        producer = to_nchw_transpose(model, node.input[0])
        shape = model.get_tensor_shape(node.input[0])
        if producer is None or shape is None or len(shape) != 4 or shape[2:] != [1, 1]:
            continue
        out = model.get_tensor_shape(node.output[0])
        if out != [shape[0], shape[1]]:
            continue
        flatten = helper.make_node("Flatten", [producer.input[0]], [node.output[0]], axis=1)
        model.graph.node.insert(list(model.graph.node).index(node), flatten)
        model.graph.node.remove(node)
        model.graph.node.remove(producer)


def transposes_past_fork(model: ModelWrapper) -> bool:
    """An NHWC->NCHW transpose read by several nodes becomes one transpose per reader, so each
    copy can move on (e.g. into the input quantizers of both branches of a downsampling block)."""
    for node in model.get_nodes_by_op_type("Transpose"):
        consumers = model.find_consumers(node.output[0]) or []
        outputs = {o.name for o in model.graph.output}
        if perm_of(node) != NHWC_TO_NCHW or len(consumers) < 2 or node.output[0] in outputs:
            continue
        for consumer in {id(c): c for c in consumers}.values():
            copy = model.make_new_valueinfo_name()
            model.graph.node.insert(list(model.graph.node).index(node) + 1,
                                    helper.make_node("Transpose", [node.input[0]], [copy], perm=NHWC_TO_NCHW))
            for i, name in enumerate(consumer.input):
                if name == node.output[0]:
                    consumer.input[i] = copy
        model.graph.node.remove(node)
        return True
    return False


def fingerprint(model: ModelWrapper) -> bytes:
    """The graph, serialized: equal when nothing changed."""
    return model.graph.SerializeToString(deterministic=True)


def step_amed_shuffle_layouts(model: ModelWrapper, cfg) -> ModelWrapper:
    """Make the channel split, concatenation and channel shuffle work on the channels-last tensors
    the lowered convolutions produce, so FINN maps them to ``StreamingSplit``, ``StreamingConcat``
    and a streaming ``InnerShuffle`` (channel axes innermost), and no NCHW transpose stays between
    hardware layers. The NHWC->NCHW transposes are moved forward past channel shuffles,
    concatenations, splits and thresholds until they meet the NCHW->NHWC ones of the next
    convolutions and cancel; a transpose left on the pooled 1x1 map before ``Reshape(N, C)``
    becomes a ``Flatten`` (``pooled_flatten``). The graph computes the same numbers. A graph with
    no ``Split``, ``Concat`` or 5-d ``Transpose`` is returned as it is. Run after streamlining (and
    ``step_amed_pool_head``), before ``step_amed_integer_io``."""
    if not (model.get_nodes_by_op_type("Split") or model.get_nodes_by_op_type("Concat")
            or any(len(model.get_tensor_shape(n.input[0]) or []) > 4 for n in model.get_nodes_by_op_type("Transpose"))):
        return model  # nothing of ShuffleNet's kind: other models' graphs stay as they are
    before = None
    for _ in range(1000):  # each pass moves transposes forward; a graph that keeps changing is a bug
        if before == fingerprint(model):
            break
        before = fingerprint(model)
        while (channel_shuffle_to_nhwc(model) or transposes_past_concat(model) or transposes_past_split(model)
               or transposes_past_fork(model)):
            pass
        model = model.transform(SortGraph()).transform(InferShapes()).transform(InferDataTypes())
        model = model.transform(AbsorbTransposeIntoMultiThreshold())
        model = model.transform(AbsorbConsecutiveTransposes())
    else:
        raise RuntimeError("step_amed_shuffle_layouts: the graph still changed after 1000 passes")
    pooled_flatten(model)
    model = model.transform(InferDataLayouts())
    model = model.transform(RemoveCNVtoFCFlatten())
    model = model.transform(GiveUniqueNodeNames())
    model = model.transform(InferShapes()).transform(InferDataTypes()).transform(InferDataLayouts())
    return model.transform(RemoveUnusedTensors())


def step_amed_shuffle_to_hw(model: ModelWrapper, cfg) -> ModelWrapper:
    """Split each generic ``Shuffle`` (what FINN's ``step_convert_to_hw`` makes of a channel
    shuffle) into FINN's ``InnerShuffle``/``OuterShuffle`` layers and specialize them, as FINN's
    ``step_transpose_decomposition`` does; a generic ``Shuffle`` has no cycle or resource estimate,
    so without this the shuffles would be missing from the reports. A channel shuffle on the
    channels-last stream is one ``InnerShuffle`` (a swap of the two innermost axes). Run after
    ``step_specialize_layers``. FINN's ``SetFolding`` does not fold ``InnerShuffle`` (SIMD stays 1:
    H * W * C cycles a frame, about twice that by FINN's estimate); its LUT/BRAM estimate is 0."""
    if not model.get_nodes_by_op_type("Shuffle"):
        return model
    model = model.transform(ShuffleDecomposition())
    model = model.transform(InferInnerOuterShuffles())
    model = model.transform(SpecializeLayers(cfg.fpga_part))
    model = model.transform(GiveUniqueNodeNames())
    return model.transform(InferShapes()).transform(InferDataTypes())
