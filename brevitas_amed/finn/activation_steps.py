"""FINN build steps for the activations of MobileNetV3 and EfficientNet (Hardsigmoid, Sigmoid,
Hardswish, SiLU).

Runs inside the FINN environment only (imports ``finn``), like ``finn_steps``. FINN 1.6.1 has no
hardware layer for these activations, so conversion leaves them in software and the dataflow
partition stops ("Unsupported/unmapped layer(s) ... starting with node HardSwish_0"). They are
rewritten, exactly, into what FINN has:

* Hardsigmoid and Sigmoid (squeeze-and-excitation gates) feed an unsigned quantizer: after FINN's
  QONNX conversion ``HardSigmoid``/``Sigmoid -> MultiThreshold``. Both are monotone, so
  "act(x) >= t" is "x >= x_t" with x_t the smallest float32 for which the activation (as
  onnxruntime computes it) reaches t: the activation folds into the quantizer's thresholds
  (``step_amed_activation_thresholds``), and FINN streamlines and converts them as usual.
* Hardswish and SiLU are not monotone, so thresholds cannot hold them; but brevitas-amed
  quantizes their input too (``QuantHardSwishLut``, ``QuantSiLU``: a signed integer input of at
  most 8 bits). After conversion Hardswish is ``MultiThreshold -> scale -> HardSwish ->
  MultiThreshold -> integer offset`` and SiLU ``MultiThreshold -> scale -> (Sigmoid, Mul(x,
  sigmoid)) -> MultiThreshold -> offset``: a function of the input quantizer's integer count, so
  it becomes a table (``step_amed_activation_lookup``): ``Cast -> Gather(table) -> Reshape``,
  each entry computed by executing the replaced nodes themselves on that count, so the graph
  computes the same numbers. Streamlining then absorbs the scales around the table as around any
  activation; ``step_amed_lookup_layouts`` moves the ``Transpose`` it leaves in front of each
  table behind it, so the table reads the channels-last stream. The ``Cast`` (float to int64
  indices) keeps the graph executable by qonnx/onnxruntime for the streamlining check;
  ``step_amed_lookup_to_hw`` removes it just before FINN's ``step_convert_to_hw``, whose
  ``InferLookupLayer`` then maps each ``Gather`` to FINN's ``Lookup`` layer (a table in
  BRAM/LUTRAM, one element a cycle) and ``InferReshape`` the ``Reshape`` that drops the table's
  width-1 axis.
"""

from __future__ import annotations

import functools

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.general import GiveUniqueNodeNames, RemoveUnusedTensors
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import get_by_name, qonnx_make_model

SCALAR_OPS = ("Mul", "Add", "Sub", "Div")  # with one constant of one element: elementwise on the integer
MONOTONE = ("HardSigmoid", "Sigmoid")  # fold into the thresholds of the quantizer after them
ELEMENTWISE = SCALAR_OPS + ("HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Relu")  # may lie inside a table


def hardsigmoid_threshold(t: float, alpha: float, beta: float) -> float:
    """The smallest float32 x with ``max(0, min(1, alpha * x + beta)) >= t`` (float32 arithmetic, as
    onnxruntime computes HardSigmoid); -inf if every x does, +inf if none does."""
    if t <= 0:
        return -np.inf
    if t > 1:
        return np.inf
    a, b, t32 = np.float32(alpha), np.float32(beta), np.float32(t)

    def reaches(x):
        return np.minimum(np.float32(1), a * np.float32(x) + b) >= t32

    x = np.float32((float(t) - beta) / alpha)
    while not reaches(x):
        x = np.nextafter(x, np.float32(np.inf))
    while reaches(np.nextafter(x, np.float32(-np.inf))):
        x = np.nextafter(x, np.float32(-np.inf))
    return float(x)


@functools.cache
def onnxruntime_sigmoid():
    """onnxruntime's own float32 ``Sigmoid`` kernel (what qonnx/FINN execution runs), as a function."""
    import onnxruntime as ort

    node = helper.make_node("Sigmoid", ["x"], ["y"])
    graph = helper.make_graph([node], "sigmoid", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    session = ort.InferenceSession(qonnx_make_model(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": np.asarray(x, dtype=np.float32).reshape(-1)})[0]


def float_key(x: np.ndarray) -> np.ndarray:
    """float32 -> int64 in the same order (consecutive floats, consecutive keys)."""
    bits = np.asarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def key_float(key: np.ndarray) -> np.ndarray:
    bits = np.where(key < 0, (-key) | 0x80000000, key).astype(np.uint32)
    return bits.view(np.float32)


def sigmoid_thresholds(thresholds: np.ndarray, sigmoid=None) -> np.ndarray:
    """For each t: the smallest float32 x with ``sigmoid(x) >= float32(t)``, ``sigmoid`` being
    onnxruntime's float32 kernel (monotone); -inf if every x reaches t, +inf if none does. A
    bisection over the float32 values in [-100, 100], all thresholds at once."""
    sigmoid = sigmoid or onnxruntime_sigmoid()
    t = np.asarray(thresholds, dtype=np.float32).reshape(-1)
    lo, hi = np.full(t.shape, float_key(-100.0)), np.full(t.shape, float_key(100.0))
    every = (t <= 0) | (sigmoid(key_float(lo)) >= t)
    none = sigmoid(key_float(hi)) < t
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        reached = sigmoid(key_float(mid)) >= t
        hi, lo = np.where(reached, mid, hi), np.where(reached, lo, mid)
    x = key_float(hi).astype(np.float64)
    x[every], x[none & ~every] = -np.inf, np.inf
    return x.reshape(np.shape(thresholds))


def folded_thresholds(node, thresholds: np.ndarray) -> np.ndarray:
    if node.op_type == "Sigmoid":
        return sigmoid_thresholds(thresholds)
    alpha = get_by_name(node.attribute, "alpha")
    beta = get_by_name(node.attribute, "beta")
    alpha, beta = (alpha.f if alpha else 0.2), (beta.f if beta else 0.5)
    return np.vectorize(lambda t: hardsigmoid_threshold(t, alpha, beta))(thresholds.astype(np.float64))


def step_amed_activation_thresholds(model: ModelWrapper, cfg) -> ModelWrapper:
    """Fold each ``HardSigmoid``/``Sigmoid -> MultiThreshold`` (the activation's only consumer) into
    one ``MultiThreshold`` on the activation's input. A threshold no input reaches becomes +inf,
    one every input passes -inf; the count of thresholds stays, as FINN's RTL thresholding expects
    2^bits - 1 (it pads with zeros), and FINN's ``RoundAndClipThresholds`` later clips the
    infinities to the accumulator's range. Exact up to float32 ties of onnxruntime's kernels.
    Run after FINN's ``step_tidy_up``, before streamlining."""
    for node in list(model.graph.node):
        if node.op_type not in MONOTONE:
            continue
        consumers = model.find_consumers(node.output[0]) or []
        if len(consumers) != 1 or consumers[0].op_type != "MultiThreshold":
            continue
        mt = consumers[0]
        new = folded_thresholds(node, model.get_initializer(mt.input[1]))
        model.set_initializer(mt.input[1], new.astype(np.float32))
        mt.input[0] = node.input[0]
        model.graph.node.remove(node)
    return model.transform(InferShapes()).transform(InferDataTypes())


def single_consumer(model: ModelWrapper, tensor: str):
    consumers = model.find_consumers(tensor) or []
    return consumers[0] if len(consumers) == 1 else None


def is_scalar_op(model: ModelWrapper, node) -> bool:
    if node.op_type not in SCALAR_OPS:
        return False
    const = [model.get_initializer(i) for i in node.input]
    return len(node.input) == 2 and const[0] is None and const[1] is not None and const[1].size == 1


def per_tensor_thresholds(model: ModelWrapper, node) -> bool:
    return node.op_type == "MultiThreshold" and model.get_initializer(node.input[1]).shape[0] == 1


def lookup_chain(model: ModelWrapper, source) -> list | None:
    """For a per-tensor ``MultiThreshold`` (an input quantizer): the nodes from its output to the
    next per-tensor quantizer's ``MultiThreshold`` (and any integer scalar ``Add`` after it), when
    they are elementwise, read only the source's output, each other's outputs and one-element
    constants, and nothing outside reads their tensors; the chain must hold a nonlinear node
    (``HardSwish``, or ``Sigmoid`` and ``Mul`` for SiLU). None when the pattern is not there."""
    if not per_tensor_thresholds(model, source):
        return None
    nodes = list(model.graph.node)
    start = next(i for i, n in enumerate(nodes) if n.name == source.name)
    inside, chain, end = {source.output[0]}, [], None
    for node in nodes[start + 1:]:
        if not inside.intersection(node.input):
            continue
        if per_tensor_thresholds(model, node) and end is None and node.input[0] in inside:
            end = node
            continue
        others = [i for i in node.input if i not in inside]
        if (end is not None or node.op_type not in ELEMENTWISE
                or any(model.get_initializer(i) is None or model.get_initializer(i).size != 1 for i in others)):
            return None
        chain.append(node)
        inside.update(node.output)
    graph_outputs = {o.name for o in model.graph.output}
    if end is None or inside & graph_outputs or all(is_scalar_op(model, n) for n in chain):
        return None
    chain.append(end)
    node = single_consumer(model, end.output[0])
    while node is not None and node.op_type in ("Add", "Sub") and is_scalar_op(model, node):
        const = float(model.get_initializer(node.input[1]).reshape(-1)[0])
        if const != round(const):
            break
        chain.append(node)
        node = single_consumer(model, node.output[0])
    return chain


def evaluate_chain(model: ModelWrapper, chain: list, values: np.ndarray, name: str) -> np.ndarray:
    """Run the chain's own nodes on ``values`` given as tensor ``name`` (one value per batch item,
    one channel)."""
    nodes = list(chain)
    shape = [len(values), 1, 1, 1]
    inits = {}
    for n in nodes:
        for i in n.input:
            init = model.get_initializer(i)
            if init is not None:
                inits[i] = helper.make_tensor(i, TensorProto.FLOAT, init.shape, init.astype(np.float32).ravel())
    graph = helper.make_graph([n for n in nodes], "lookup_table",
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, shape)],
                              list(inits.values()))
    sub = ModelWrapper(qonnx_make_model(graph, opset_imports=list(model.model.opset_import)))
    # data layout is irrelevant here: one channel, one pixel, one value per batch item
    for n in sub.graph.node:
        if n.op_type == "MultiThreshold":
            getCustomOp(n).set_nodeattr("data_layout", "NCHW")
    sub = sub.transform(InferShapes())
    x = values.astype(np.float32).reshape(shape)
    return execute_onnx(sub, {name: x})[nodes[-1].output[0]].reshape(-1)


def integer_type(values: np.ndarray, preferred: DataType | None) -> DataType:
    """``preferred`` if it holds every value, else the smallest integer type that does."""
    lo, hi = int(values.min()), int(values.max())
    if preferred is not None and preferred.is_integer() and preferred.allowed(lo) and preferred.allowed(hi):
        return preferred
    for bits in range(1, 33):
        for dt in (DataType[f"UINT{bits}"], DataType[f"INT{bits}"]) if bits > 1 else (DataType["UINT1"],):
            if dt.allowed(lo) and dt.allowed(hi):
                return dt
    raise ValueError(f"table values {lo}..{hi} need more than 32 bits")


def step_amed_activation_lookup(model: ModelWrapper, cfg) -> ModelWrapper:
    """Replace each quantized Hardswish or SiLU (input quantizer, then the elementwise nodes up to
    the output quantizer and its integer offset: ``lookup_chain``) by
    ``Cast -> Gather(table) -> Reshape`` on the input quantizer's count, whose
    ``MultiThreshold`` then outputs the unsigned count (``out_bias`` 0) that indexes the table.
    Run after FINN's ``step_tidy_up`` (before streamlining, which then absorbs the scales around
    the table into the neighbouring thresholds and layers, as for any activation)."""
    replaced = set()
    for source in model.get_nodes_by_op_type("MultiThreshold"):
        chain = None if source.name in replaced else lookup_chain(model, source)
        if chain is None:
            continue
        src = getCustomOp(source)
        steps = model.get_initializer(source.input[1]).shape[1]
        counts = np.arange(steps + 1, dtype=np.float64)
        values = src.get_nodeattr("out_scale") * counts + src.get_nodeattr("out_bias")
        table = evaluate_chain(model, chain, values, source.output[0])
        if not np.all(table == np.round(table)):
            continue  # not an integer output: nothing FINN's Lookup could hold
        out = chain[-1].output[0]
        out_mt = next(n for n in reversed(chain) if n.op_type == "MultiThreshold")
        dtype = integer_type(table, DataType[getCustomOp(out_mt).get_nodeattr("out_dtype")])
        src.set_nodeattr("out_bias", 0.0)
        src.set_nodeattr("out_scale", 1.0)
        index_type = integer_type(counts, None)
        src.set_nodeattr("out_dtype", index_type.name)
        shape = model.get_tensor_shape(source.output[0])
        name = source.output[0]
        table_name, index, gathered, shape_name = (model.make_new_valueinfo_name() for _ in range(4))
        model.set_initializer(table_name, table.astype(np.float32).reshape(-1, 1))
        model.set_tensor_datatype(table_name, dtype)
        model.set_initializer(shape_name, np.asarray(shape, dtype=np.int64))
        new = [helper.make_node("Cast", [name], [index], to=TensorProto.INT64),
               helper.make_node("Gather", [table_name, index], [gathered], axis=0),
               helper.make_node("Reshape", [gathered, shape_name], [out])]
        position = list(model.graph.node).index(chain[0])
        for n in chain:
            replaced.add(n.name)
            model.graph.node.remove(n)
        for i, n in enumerate(new):
            model.graph.node.insert(position + i, n)
        for vi in [v for v in model.graph.value_info if v.name in (index, gathered)]:
            model.graph.value_info.remove(vi)
        model.set_tensor_datatype(name, index_type)
    model = model.transform(InferShapes())
    model = model.transform(InferDataTypes())
    model = model.transform(GiveUniqueNodeNames())
    return model.transform(RemoveUnusedTensors())


def table_lookups(model: ModelWrapper) -> list[tuple]:
    """Every ``Cast -> Gather(constant table) -> Reshape`` that ``step_amed_activation_lookup`` made."""
    found = []
    for gather in model.get_nodes_by_op_type("Gather"):
        cast = model.find_producer(gather.input[1])
        reshape = single_consumer(model, gather.output[0])
        if (model.get_initializer(gather.input[0]) is not None and cast is not None and cast.op_type == "Cast"
                and reshape is not None and reshape.op_type == "Reshape"):
            found.append((cast, gather, reshape))
    return found


def step_amed_lookup_layouts(model: ModelWrapper, cfg) -> ModelWrapper:
    """Move the ``Transpose`` (NHWC -> NCHW) that streamlining leaves in front of each table
    lookup to after it (a table applied per element commutes with any reordering), then cancel
    consecutive transposes, so the lookup runs on the channels-last stream of the thresholds
    before it. Needed because FINN infers the layout of a ``Gather`` output from its first input
    (the table) and so guesses channels-last for every 4-d lookup. Run after streamlining."""
    for cast, gather, reshape in table_lookups(model):
        transpose = model.find_producer(cast.input[0])
        if (transpose is None or transpose.op_type != "Transpose"
                or single_consumer(model, transpose.output[0]) is None):
            continue
        source = transpose.input[0]
        out = reshape.output[0]
        moved = model.make_new_valueinfo_name()
        cast.input[0] = source
        reshape.output[0] = moved
        transpose.input[0] = moved
        transpose.output[0] = out
        model.set_initializer(reshape.input[1], np.asarray(model.get_tensor_shape(source), dtype=np.int64))
        model.graph.node.remove(transpose)
        model.graph.node.insert(list(model.graph.node).index(reshape) + 1, transpose)
        for vi in [v for v in model.graph.value_info if v.name in (cast.output[0], gather.output[0])]:
            model.graph.value_info.remove(vi)
        model.set_tensor_datatype(moved, model.get_tensor_datatype(gather.output[0]))
    from finn.transformation.streamline.absorb import AbsorbConsecutiveTransposes
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    model = model.transform(InferShapes())
    model = model.transform(AbsorbConsecutiveTransposes())
    model = model.transform(InferDataTypes())
    return model.transform(InferDataLayouts())


def step_amed_lookup_to_hw(model: ModelWrapper, cfg) -> ModelWrapper:
    """Index each table ``Gather`` by the unsigned integer tensor directly (drop the ``Cast`` that
    only made the graph executable by onnxruntime), so FINN's ``step_convert_to_hw`` maps it to
    ``Lookup``. Run just before ``step_convert_to_hw``; the graph is no longer executable by qonnx
    (its Gather reads float indices) but holds the same integers."""
    for node in list(model.graph.node):
        if node.op_type != "Gather" or model.get_initializer(node.input[0]) is None:
            continue
        cast = model.find_producer(node.input[1])
        if cast is None or cast.op_type != "Cast" or len(model.find_consumers(cast.output[0]) or []) != 1:
            continue
        index_type = model.get_tensor_datatype(cast.input[0])
        if not index_type.is_integer() or index_type.signed():
            continue
        node.input[1] = cast.input[0]
        model.graph.node.remove(cast)
    return model.transform(RemoveUnusedTensors())
