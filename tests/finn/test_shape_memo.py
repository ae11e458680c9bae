"""``qonnx_speed``'s shape inference, installed in a fresh interpreter (it patches qonnx for the
whole process): it runs ONNX's shape inference again only when the weightless graph changed, and
its shapes equal qonnx's own, large initializers included. Needs no FINN environment."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("qonnx")

SCRIPT = r'''
import json
import numpy as np
import onnx
import onnx.helper as oh
import onnx.shape_inference as osi
from onnx import TensorProto, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

def model():
    w = numpy_helper.from_array(np.ones((64, 3, 3, 3), np.float32), "w")       # 1,728 elements: stripped
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")    # read for its values: kept
    nodes = [oh.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
             oh.make_node("Relu", ["c"], ["r"]), oh.make_node("Reshape", ["r", "shape"], ["y"])]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 9])],
                          [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, shape])
    return ModelWrapper(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)]))

runs = [0]
original = osi.infer_shapes
def counted(*a, **k):
    runs[0] += 1
    return original(*a, **k)
osi.infer_shapes = counted

def sequence():
    """Four shape inferences of one graph, then one after a node was added; shapes and ONNX runs."""
    runs[0] = 0
    m, seen = model(), []
    for _ in range(4):
        m = m.transform(InferShapes())
        seen.append(runs[0])
    before = {t: m.get_tensor_shape(t) for t in ("c", "r", "y")}
    m.graph.node.append(oh.make_node("Relu", ["y"], ["z"]))
    m.graph.output[0].name = "z"
    m = m.transform(InferShapes())
    return {"runs": seen, "after_change": runs[0], "before": before,
            "after": {t: m.get_tensor_shape(t) for t in ("c", "r", "y", "z")}}

plain = sequence()
from brevitas_amed.finn import qonnx_speed
assert qonnx_speed.use_linear_graph_helpers()
print(json.dumps({"plain": plain, "linear": sequence()}))
'''


def test_shape_inference_runs_again_only_for_a_changed_graph():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    plain, linear = r["plain"], r["linear"]
    assert plain["before"] == {"c": [1, 64, 7, 7], "r": [1, 64, 7, 7], "y": [1, 3136]}
    assert linear["before"] == plain["before"] and linear["after"] == plain["after"]
    assert plain["after"]["z"] == [1, 3136] and plain["runs"] == [1, 2, 3, 4]
    # the first call infers; the second sees the first's value_info, so infers once more; then none
    assert linear["runs"] == [1, 2, 2, 2]
    assert linear["after_change"] == 3
