"""Linear-time versions of qonnx's whole-graph helpers, for FINN's environment only.

qonnx looks every tensor up by scanning the graph's lists, so these helpers are quadratic in the
graph size, and FINN's streamlining runs them after every single rewrite (its transformations
change one node per pass): streamlining is then cubic, and a MobileNetV2 (333 nodes) did not
finish in 30 minutes. The replacements give the same graphs (checked byte for byte on the digits
models' front steps and on MobileNetV2's shape inference), building their name indexes once per
call; they are installed only for the qonnx version they were checked against (FINN's pin). One
difference: a node that reads one tensor twice gets both inputs renamed (qonnx renames the first
only, which disconnects the second).
"""

from __future__ import annotations

import math
from importlib import metadata

import onnx
import onnx.shape_inference as onnx_shape_inference
import qonnx.transformation.infer_shapes as infer_shapes_module
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation import general
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.util.basic import random_string
from toposort import toposort_flatten


def _check_all_tensor_shapes_specified(self, fix_missing_init_shape=False):
    graph = self.graph
    counts = {}
    for x in (*graph.input, *graph.output, *graph.value_info):
        counts[x.name] = counts.get(x.name, 0) + 1
    inits = {}
    for x in graph.initializer:
        inits.setdefault(x.name, x)
    ret = True
    for n in graph.node:
        for name in [i for i in n.input if i != ""] + list(n.output):
            count = counts.get(name, 0)
            assert count <= 1, "Multiple ValueInfoProto found for " + name
            if count == 0 and name not in inits:
                ret = False
            elif count == 0 and fix_missing_init_shape:
                init = inits[name]
                self.set_tensor_shape(name, list(init.dims), dtype=init.data_type)
                counts[name] = 1
    return ret


def _sort_graph(self, model):
    if len(model.graph.node) == 1:
        return (model, False)
    node_list = list(model.graph.node)
    producer = {}
    for idx, n in enumerate(node_list):
        for o in n.output:
            producer.setdefault(o, idx)
    sources = {x.name for x in model.graph.initializer} | {x.name for x in model.graph.input}
    deps = {}
    for idx, n in enumerate(node_list):
        preds = [producer[i] for i in n.input if i in producer]
        if not preds:
            if any(name in sources for name in n.input):
                deps[idx] = set()
            continue
        deps[idx] = set(preds)
    order = toposort_flatten(deps)
    for n in node_list:
        model.graph.node.remove(n)
    for new_idx, idx in enumerate(order):
        model.graph.node.insert(new_idx, node_list[idx])
    return (model, False)


def _unique_parameter_tensors(self, model):
    inits = {x.name for x in model.graph.initializer}
    seen = set()
    for n in model.graph.node:
        for idx, name in enumerate(list(n.input)):
            if name not in inits:
                continue
            if name not in seen:
                seen.add(name)
                continue
            new_name = model.make_new_valueinfo_name()
            model.set_initializer(new_name, model.get_initializer(name))
            model.set_tensor_datatype(new_name, model.get_tensor_datatype(name))
            n.input[idx] = new_name
    return (model, False)


class _Renames:
    """``rename_tensor`` calls in sequence, applied to the graph in one pass at the end."""

    def __init__(self, model):
        self.model, self.owner, self.current = model, {}, {}

    def name(self, orig):
        return self.current.get(orig, orig)

    def orig(self, name):
        return self.owner[name] if name in self.owner else (None if name in self.current else name)

    def rename(self, old, new):
        orig = self.orig(old)
        if orig is None or old == new:
            return
        self.owner.pop(old, None)
        self.owner[new], self.current[orig] = orig, new

    def apply(self):
        g, name = self.model.graph, self.name
        for container in (g.input, g.output, g.value_info, g.initializer):
            for x in container:
                x.name = name(x.name)
        for x in g.quantization_annotation:
            x.tensor_name = name(x.tensor_name)
        for n in g.node:
            for field in (n.input, n.output):
                for k, t in enumerate(field):
                    if t:
                        field[k] = name(t)
        return self.model


def _unique_tensor_names(self, model):
    renames = _Renames(model)
    for i, old in enumerate(model.get_all_tensor_names()):
        renames.rename(old, f"tensor_{i}" if type(self) is general.GiveUniqueTensorNames else random_string())
    return (renames.apply(), False)


def _readable_tensor_names(self, model):
    model = model.transform(general.GiveUniqueTensorNames())
    renames = _Renames(model)
    inits = {x.name for x in model.graph.initializer}
    for n in model.graph.node:
        assert n.name != "", "Found empty node name"
        for k, o in enumerate(n.output):
            renames.rename(renames.name(o), "%s_out%d" % (n.name, k))
        k = 0
        for i in n.input:
            current = renames.name(i)
            if renames.orig(current) in inits:
                renames.rename(current, "%s_param%d" % (n.name, k))
                k += 1
    for i, inp in enumerate(model.graph.input):
        renames.rename(renames.name(inp.name), "global_in" if i == 0 else "global_in_%d" % i)
    for i, outp in enumerate(model.graph.output):
        renames.rename(renames.name(outp.name), "global_out" if i == 0 else "global_out_%d" % i)
    return (renames.apply(), False)


class _ShapeInferenceWithoutWeights:
    """``onnx.shape_inference`` for qonnx's ``InferShapes`` without the bytes of large initializers:
    it runs on a copy of the graph whose large initializers (more than 1,024 elements: no
    shape-defining input is that large) carry only their name, type and dims, and the shapes it
    infers are written back into the model, which qonnx's ``InferShapes`` then uses in place of the
    one it passed (it replaces the model by the result). Moving megabytes of weights to ONNX's C++
    and back was most of each call on a MobileNetV2, and copying them in Python most of
    EfficientNet-B0's streamlining after that.

    The last result is kept with the bytes of the light graph it came from: FINN's composed
    streamlining infers shapes after every sub-transformation, most of which change nothing, and a
    graph equal byte for byte to the last one gets the same shapes without asking ONNX again."""

    last: tuple[tuple, onnx.ModelProto] | None = None

    @classmethod
    def infer_shapes(cls, model, *args, **kwargs):
        graph = model.graph
        light = onnx.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import,
                                functions=model.functions)
        light.graph.name = graph.name
        for field in ("node", "input", "output", "value_info"):
            getattr(light.graph, field).extend(getattr(graph, field))
        for init in graph.initializer:
            # by element count: protobuf's ByteSize() serialises the tensor (1.2 s a call over
            # EfficientNet-B0's 678 MB of lowered weights, half of its pooling head's streamlining)
            if math.prod(init.dims) > 1024:
                light.graph.initializer.append(
                    onnx.TensorProto(name=init.name, data_type=init.data_type, dims=init.dims))
            else:
                light.graph.initializer.append(init)
        key = (light.SerializeToString(deterministic=True), args, tuple(sorted(kwargs.items())))
        last = cls.last
        if last is not None and last[0] == key:
            result = last[1]  # never handed out: extend() below copies its messages
        else:
            result = onnx_shape_inference.infer_shapes(light, *args, **kwargs)
            cls.last = (key, result)
        for field in ("input", "output", "value_info"):
            target = getattr(graph, field)
            del target[:]
            target.extend(getattr(result.graph, field))
        return model


def _sort_commutative_inputs(self, model):
    inits = {x.name for x in model.graph.initializer}
    modified = False
    for node in model.graph.node:
        if node.op_type in self.SUPPORTED_COMMUTATIVE_OPS:
            dynamics = [i for i in node.input if i not in inits]
            inputs = [*dynamics, *[i for i in node.input if i not in dynamics]]
            for i, name in enumerate(inputs):
                if node.input[i] != name:
                    modified = True
                node.input[i] = name
    return (model, modified)


class _IndexedDatatypes:
    """``get_tensor_datatype``/``set_tensor_datatype`` for one ``InferDataTypes`` pass, with the
    quantization annotations indexed by tensor name (qonnx scans them at every lookup, and FINN's
    ``AbsorbScalarBiasIntoMultiThreshold`` runs a whole pass after each node it absorbs: most of an
    EfficientNet-B0's streamlining). Same reads and writes as qonnx's; an ambiguous annotation
    (one name twice) goes to qonnx's own method, which raises as before."""

    def __init__(self, model):
        self.model, self.get_original, self.set_original = model, model.get_tensor_datatype, model.set_tensor_datatype
        self.annotations, self.seen, self.cache = {}, 0, {}

    def annotation(self, name):
        container = self.model.graph.quantization_annotation
        if self.seen != len(container):  # (re)index: first use, or annotations added behind our back
            self.annotations, self.seen, self.cache = {}, len(container), {}
            for a in container:
                self.annotations[a.tensor_name] = None if a.tensor_name in self.annotations else a
        return self.annotations.get(name, False)  # False: none; None: ambiguous

    def entries(self, annotation):
        return [e for e in annotation.quant_parameter_tensor_names if e.key == "finn_datatype"]

    def get(self, name):
        if name not in self.cache:
            a = self.annotation(name)
            found = self.entries(a) if a else []
            self.cache[name] = DataType[found[0].value] if len(found) == 1 else self.get_original(name)
        return self.cache[name]

    def set(self, name, datatype):
        self.cache.pop(name, None)
        a = self.annotation(name)
        found = self.entries(a) if a else []
        if a is None or len(found) > 1:
            return self.set_original(name, datatype)
        if found:
            if datatype is None:
                found[0].Clear()
            else:
                found[0].value = datatype.name
        elif datatype is not None:
            entry = onnx.StringStringEntryProto(key="finn_datatype", value=datatype.name)
            if a is False:
                container = self.model.graph.quantization_annotation
                container.append(onnx.TensorAnnotation(tensor_name=name))
                a = self.annotations[name] = container[-1]
                self.seen = len(container)
            a.quant_parameter_tensor_names.append(entry)

    def forget(self, method):
        def call(name, *args, **kwargs):
            self.cache.pop(name, None)
            return method(name, *args, **kwargs)
        return call


_INFER_DATATYPES = InferDataTypes.apply


def _infer_datatypes(self, model):
    index = _IndexedDatatypes(model)
    model.get_tensor_datatype, model.set_tensor_datatype = index.get, index.set
    model.set_tensor_shape, model.set_initializer = index.forget(model.set_tensor_shape), index.forget(model.set_initializer)
    try:
        return _INFER_DATATYPES(self, model)
    finally:
        for method in ("get_tensor_datatype", "set_tensor_datatype", "set_tensor_shape", "set_initializer"):
            delattr(model, method)


LINEAR_HELPERS_FOR = "1.0.0"  # the qonnx these replacements were checked against (FINN's pin)


def use_linear_graph_helpers() -> bool:
    """Replace qonnx's quadratic whole-graph helpers by the linear ones above (same results), for
    the qonnx version they were checked against only; returns whether they were installed."""
    if metadata.version("qonnx") != LINEAR_HELPERS_FOR:
        return False
    infer_shapes_module.si = _ShapeInferenceWithoutWeights
    ModelWrapper.check_all_tensor_shapes_specified = _check_all_tensor_shapes_specified
    general.SortGraph.apply = _sort_graph
    general.GiveUniqueParameterTensors.apply = _unique_parameter_tensors
    general.GiveUniqueTensorNames.apply = _unique_tensor_names
    general.GiveRandomTensorNames.apply = _unique_tensor_names
    general.GiveReadableTensorNames.apply = _readable_tensor_names
    general.SortCommutativeInputsInitializerLast.apply = _sort_commutative_inputs
    InferDataTypes.apply = _infer_datatypes
    return True
