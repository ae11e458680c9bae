"""FINN build step for grouped convolutions that are not depthwise (RegNet, ResNeXt).

Runs inside the FINN environment only (imports ``qonnx``), like ``finn_steps``. FINN lowers a
convolution to ``Im2Col + MatMul`` with qonnx's ``LowerConvsToMatMul``, which takes only dense
(``group == 1``) and depthwise (``group == channels``) convolutions; a grouped convolution such as
RegNet's 3x3 (group width 16, ``group == channels / 16``) stops it with a reshape error. FINN
1.6.1 has no layer for such a convolution either (``VVAU`` is depthwise only).

``step_amed_grouped_convs`` rewrites each one, on the QONNX graph before FINN's conversion, into
the dense convolution with the block-diagonal weight that computes the same thing: output channel
``o`` of group ``g`` keeps its weights on the input channels of group ``g`` and gets zeros on all
others. It is exact: a zero weight adds nothing to the sum, and the weight quantizer maps zero to
zero at any bit width (checked per layer: a quantizer that does not is left alone). The weight
quantizer keeps its scale (per output channel, which the rewrite does not move) and its bits, so
FINN's ``MVAU`` carries the chosen weight bits.

The cost: FINN sizes the ``MVAU`` as the dense layer it now is. Its weight memory and its
multiply-accumulates per output are ``group`` times those of the grouped layer (x25 for
``regnet_x_400mf``'s last stage), so FINN's cycle, LUT and BRAM estimates for those layers are
those of a dense layer, not of a unit that skips the zeros (FINN has none). The step records the
grouped layers and their groups in the model's metadata (``amed_grouped_convs``: weight tensor ->
group). Depthwise convolutions with a channel multiplier (``group == input channels < output
channels``), which qonnx does not lower either, are rewritten the same way.

``step_amed_grouped_convs_split`` is the other exact rewrite, for a FINN steps list in its place:
``Split`` (channels) -> one dense ``Conv`` per group, each with its slice of the weights and its
own copy of the weight quantizer (same bits, its slice of the per-channel scale) -> ``Concat``.
FINN's ``StreamlinePlus`` moves the scales past ``Split``/``Concat``; the layout transposes around
them need ``shuffle_steps.step_amed_shuffle_layouts`` (after ``step_amed_pool_head``) in the same
list, as in the runner's. ``step_convert_to_hw`` then maps them to ``StreamingSplit``/``StreamingConcat``: ``group`` small MVAUs
(plus one padding and sliding-window unit each) that hold only the layer's own weights. It costs
graph size instead (``regnet_x_400mf``: 380 per-group convolutions for 22 grouped layers), and
FINN's streamlining time grows with the node count.

Tying FINN's layers back to the job's: the block-diagonal weight holds the layer's integer
weights plus zeros, so a match on the multiset of integer weights must ignore zeros for these
layers (``nonzero_signature``); after the split each MVAU holds one group's weights.
"""

from __future__ import annotations

import json

import numpy as np
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.general.intquant import int_quant
from qonnx.transformation.general import RemoveUnusedTensors
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import get_by_name

WEIGHT_QUANTS = ("Quant", "IntQuant")  # qonnx's integer quantizer (IntQuant: its newer name)
METADATA_KEY = "amed_grouped_convs"


def conv_group(node) -> int:
    """The ``group`` attribute of a ``Conv`` node (ONNX default 1)."""
    attr = get_by_name(node.attribute, "group")
    return int(attr.i) if attr is not None else 1


def is_grouped_not_depthwise(model: ModelWrapper, node) -> bool:
    """A ``Conv`` with ``1 < group`` that qonnx's lowering does not take: not depthwise, i.e. not
    ``group == input channels == output channels``."""
    if node.op_type != "Conv" or conv_group(node) == 1:
        return False
    in_shape, out_shape = model.get_tensor_shape(node.input[0]), model.get_tensor_shape(node.output[0])
    if in_shape is None or out_shape is None:
        return False
    return not (conv_group(node) == in_shape[1] == out_shape[1])


def block_diagonal(weight: np.ndarray, group: int) -> np.ndarray:
    """The dense weight ``(O, I, kh, kw)`` of a grouped convolution's weight ``(O, I / group, kh,
    kw)``: group ``g``'s output channels keep their weights on group ``g``'s input channels (ONNX's
    grouping: consecutive blocks of ``O / group`` outputs and ``I / group`` inputs), zeros elsewhere."""
    out_ch, in_per_group = weight.shape[:2]
    if out_ch % group:
        raise ValueError(f"{out_ch} output channels do not split into {group} groups")
    out_per_group = out_ch // group
    dense = np.zeros((out_ch, in_per_group * group, *weight.shape[2:]), dtype=weight.dtype)
    for g in range(group):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        dense[rows, g * in_per_group:(g + 1) * in_per_group] = weight[rows]
    return dense


def broadcasts_per_output_channel(value: np.ndarray | None) -> bool:
    """Whether a quantizer parameter (scale, zero point) broadcasts over a weight ``(O, I, kh, kw)``
    whatever ``I`` is: one value, or one per output channel (``(O, 1, 1, 1)``)."""
    if value is None:
        return False
    return value.size == 1 or (value.ndim == 4 and value.shape[1:] == (1, 1, 1))


def quantizes_zero_to_zero(model: ModelWrapper, quant, shape: tuple[int, ...]) -> bool:
    """Whether the weight quantizer ``quant`` maps a zero weight to exactly zero (zero point 0, or
    any quantizer whose grid holds 0), evaluated with qonnx's own quantizer."""
    scale, zero_point, bits = (model.get_initializer(name) for name in quant.input[1:4])
    if not (broadcasts_per_output_channel(scale) and broadcasts_per_output_channel(zero_point)) or bits is None:
        return False
    signed, narrow = get_by_name(quant.attribute, "signed"), get_by_name(quant.attribute, "narrow")
    rounding = get_by_name(quant.attribute, "rounding_mode")
    zeros = int_quant(np.zeros(shape, dtype=np.float32), scale, zero_point, bits,
                      signed.i if signed is not None else 1, narrow.i if narrow is not None else 0,
                      rounding.s.decode() if rounding is not None else "ROUND")
    return bool(np.all(zeros == 0))


def weight_source(model: ModelWrapper, node) -> tuple[str, object | None] | None:
    """The initializer holding a convolution's weight and the quantizer between them (``None`` for a
    float weight); ``None`` if the weight is computed otherwise or shared with another node."""
    if model.get_initializer(node.input[1]) is not None:
        name, quant = node.input[1], None
    else:
        quant = model.find_producer(node.input[1])
        if quant is None or quant.op_type not in WEIGHT_QUANTS or model.get_initializer(quant.input[0]) is None:
            return None
        if len(model.find_consumers(quant.output[0]) or []) != 1:
            return None
        name = quant.input[0]
    return (name, quant) if len(model.find_consumers(name) or []) == 1 else None


def step_amed_grouped_convs(model: ModelWrapper, cfg) -> ModelWrapper:
    """Rewrite every grouped, non-depthwise ``Conv`` into the dense ``Conv`` (``group = 1``) with the
    block-diagonal weight (see the module docstring): same outputs, bit for bit; FINN then lowers
    it to ``Im2Col + MatMul`` and an ``MVAU`` with the layer's weight bits, sized as a dense layer.

    A convolution whose weight is not a constant (or a constant through one integer quantizer that
    maps zero to zero, with per-tensor or per-output-channel parameters) is left as it was; FINN's
    lowering then reports it. The rewritten layers are listed in the metadata ``amed_grouped_convs``
    (weight initializer -> group)."""
    rewritten = json.loads(model.get_metadata_prop(METADATA_KEY) or "{}")
    for node in model.graph.node:
        if not is_grouped_not_depthwise(model, node):
            continue
        source = weight_source(model, node)
        if source is None:
            continue
        name, quant = source
        group = conv_group(node)
        dense = block_diagonal(model.get_initializer(name), group)
        if quant is not None and not quantizes_zero_to_zero(model, quant, dense.shape):
            continue
        model.set_initializer(name, dense)
        if quant is not None:
            model.set_tensor_shape(quant.output[0], list(dense.shape))
        get_by_name(node.attribute, "group").i = 1
        rewritten[name] = group
    if rewritten:
        model.set_metadata_prop(METADATA_KEY, json.dumps(rewritten))
        model = model.transform(InferShapes())
    return model


def nonzero_signature(weights: np.ndarray) -> list[int]:
    """The sorted nonzero integer weights of a layer: the same for a grouped layer and the
    block-diagonal ``MVAU`` FINN makes of it (FINN transposes and reshapes weights, keeps values)."""
    ints = np.round(np.asarray(weights)).astype(np.int64).ravel()
    return sorted(ints[ints != 0].tolist())


def per_group_convs(model: ModelWrapper, node, quant) -> list:
    """The nodes that replace grouped ``Conv`` ``node`` (weight quantizer ``quant``): ``Split`` of
    the input channels, per group a copy of ``quant`` on that group's weights (and its rows of a
    per-output-channel scale/zero point) feeding a dense ``Conv``, and ``Concat`` of the outputs."""
    group, weight = conv_group(node), model.get_initializer(quant.input[0])
    out_per_group, in_per_group = weight.shape[0] // group, weight.shape[1]
    sizes = model.make_new_valueinfo_name()
    model.set_initializer(sizes, np.full(group, in_per_group, dtype=np.int64))
    parts = [model.make_new_valueinfo_name() for _ in range(group)]
    outs = [model.make_new_valueinfo_name() for _ in range(group)]
    nodes = [helper.make_node("Split", [node.input[0], sizes], parts, axis=1, name=f"{node.name}_split")]
    params = [model.get_initializer(name) for name in quant.input[1:]]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "group"}
    for g in range(group):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        names = []
        for k, value in enumerate([weight] + params):
            names.append(model.make_new_valueinfo_name())
            per_channel = k == 0 or (value.ndim == 4 and value.shape[0] == weight.shape[0] > 1)
            model.set_initializer(names[-1], np.array(value[rows] if per_channel else value))
        q_out = model.make_new_valueinfo_name()
        nodes.append(helper.make_node(quant.op_type, names, [q_out], name=f"{quant.name}_g{g}", domain=quant.domain,
                                      **{a.name: helper.get_attribute_value(a) for a in quant.attribute}))
        nodes.append(helper.make_node("Conv", [parts[g], q_out], [outs[g]], name=f"{node.name}_g{g}", group=1, **attrs))
    nodes.append(helper.make_node("Concat", outs, [node.output[0]], axis=1, name=f"{node.name}_concat"))
    return nodes


def step_amed_grouped_convs_split(model: ModelWrapper, cfg) -> ModelWrapper:
    """Rewrite every grouped, non-depthwise ``Conv`` whose weight comes through one integer
    quantizer (per-tensor or per-output-channel parameters, no bias) into ``Split`` -> one ``Conv``
    per group -> ``Concat`` (see the module docstring): same outputs, bit for bit; FINN then makes
    ``group`` MVAUs of it, each with the layer's weight bits. Others are left as they were."""
    rewritten = json.loads(model.get_metadata_prop(METADATA_KEY) or "{}")
    for node in list(model.graph.node):
        if not is_grouped_not_depthwise(model, node) or len(node.input) > 2:
            continue
        source = weight_source(model, node)
        if source is None or source[1] is None:
            continue
        quant = source[1]
        params = [model.get_initializer(name) for name in quant.input[1:]]
        if any(p is None for p in params) or not all(broadcasts_per_output_channel(p) for p in params[:2]):
            continue
        rewritten[source[0]] = conv_group(node)
        index = list(model.graph.node).index(node)
        for offset, new in enumerate(per_group_convs(model, node, quant)):
            model.graph.node.insert(index + offset, new)
        model.graph.node.remove(node)
        model.graph.node.remove(quant)
    if rewritten:
        model.set_metadata_prop(METADATA_KEY, json.dumps(rewritten))
        model = model.transform(InferShapes())
        model = model.transform(RemoveUnusedTensors())
    return model
