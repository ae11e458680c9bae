"""FINN-side half of ``test_shuffle_steps``: run in FINN's environment as
``python shuffle_check.py MODEL.onnx SAMPLES``; prints one JSON object.

Three checks of ``brevitas_amed/finn/shuffle_steps.py``:

* channel shuffles: small graphs ``Transpose(NHWC->NCHW) -> Reshape -> Transpose -> Reshape`` with
  2, 3 and 4 groups, executed before and after the NHWC rewrite on random integers; and two
  look-alikes the rewrite must leave alone (a shuffle that moves the width axis, and a Reshape
  that is not followed by a Transpose);
* ``step_amed_relu_signed_quant`` on the exported model: every tensor the QONNX graph computes,
  before and after, on the same random inputs;
* ``step_amed_shuffle_layouts``: the model goes through brevitas-amed's front steps up to
  ``step_amed_pool_head``; the graph output and every tensor both graphs hold (same name and
  shape) before and after the step on the same inputs, and what the step left (transposes, the
  axes of Split/Concat, thresholds still reading NCHW tensors).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "brevitas_amed" / "finn"))

import finn_runner  # noqa: E402  (FINN's settings and the simulator shim, as the runner sets them)
import shuffle_steps  # noqa: E402
from finn.builder.build_dataflow_config import DataflowBuildConfig  # noqa: E402
from finn.core.onnx_exec import execute_onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.custom_op.registry import getCustomOp  # noqa: E402
from qonnx.transformation.infer_shapes import InferShapes  # noqa: E402
from qonnx.util.basic import get_by_name, qonnx_make_model  # noqa: E402


def shuffle_graph(n: int, h: int, w: int, c: int, factors: list[int], perm: list[int]) -> ModelWrapper:
    """NHWC input -> Transpose to NCHW -> Reshape(n, *factors) -> Transpose(perm) -> Reshape(n, c, h, w)."""
    inits = [helper.make_tensor("s1", TensorProto.INT64, [len(factors) + 1], [n, *factors]),
             helper.make_tensor("s2", TensorProto.INT64, [4], [n, c, h, w])]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=shuffle_steps.NHWC_TO_NCHW),
             helper.make_node("Reshape", ["t", "s1"], ["r"]),
             helper.make_node("Transpose", ["r"], ["p"], perm=perm),
             helper.make_node("Reshape", ["p", "s2"], ["y"])]
    graph = helper.make_graph(nodes, "shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, h, w, c])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, c, h, w])], inits)
    return ModelWrapper(qonnx_make_model(graph)).transform(InferShapes())


def channel_shuffles() -> dict:
    rng = np.random.default_rng(0)
    cases = {f"groups_{g}": (12, [g, 12 // g, 3, 5], [0, 2, 1, 3, 4]) for g in (2, 3, 4)}
    cases["width_moves"] = (12, [2, 6, 3, 5], [0, 1, 2, 4, 3])  # swaps H and W: not a channel permutation
    out = {}
    for name, (c, factors, perm) in cases.items():
        model = shuffle_graph(1, 3, 5, c, factors, perm)
        x = rng.integers(-8, 8, size=(1, 3, 5, c)).astype(np.float32)
        before = execute_onnx(model, {"x": x})["y"]
        rewritten = shuffle_steps.channel_shuffle_to_nhwc(model)
        model = model.transform(InferShapes())
        after = execute_onnx(model, {"x": x})["y"]
        transposes = [list(get_by_name(n.attribute, "perm").ints) for n in model.get_nodes_by_op_type("Transpose")]
        out[name] = {"rewritten": rewritten, "max_abs_diff": float(np.max(np.abs(before - after))),
                     "transposes": transposes, "permutes": bool(np.any(before != np.transpose(x, (0, 3, 1, 2))))}
    return out


def contexts(model: ModelWrapper, inputs: list[np.ndarray]) -> list[dict]:
    name = model.graph.input[0].name
    return [execute_onnx(model, {name: x}, return_full_exec_context=True) for x in inputs]


def largest(before: list[dict], after: list[dict], names) -> float:
    return max(float(np.max(np.abs(a[t] - b[t]))) for a, b in zip(before, after) for t in names)


def main() -> None:
    path, samples = sys.argv[1], int(sys.argv[2])
    result = {"channel_shuffles": channel_shuffles()}
    cfg = DataflowBuildConfig(output_dir=str(Path(path).parent / "finn_front"), synth_clk_period_ns=10.0,
                              fpga_part="xc7z020clg400-1", generate_outputs=[])
    model = ModelWrapper(path)
    shape = model.get_tensor_shape(model.graph.input[0].name)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(0.0, 1.0, size=shape).astype(np.float32) for _ in range(samples)]

    names = [n for n, _ in finn_runner.FRONT]
    for _, step in finn_runner.FRONT[:names.index("relu_signed_quant")]:
        model = step(model, cfg)
    def signed_after_relu(model):
        return [n for n in model.get_nodes_by_op_type("Quant") if get_by_name(n.attribute, "signed").i
                and model.find_producer(n.input[0]) is not None and model.find_producer(n.input[0]).op_type == "Relu"]

    signed = signed_after_relu(model)
    before = contexts(model, inputs)
    model = shuffle_steps.step_amed_relu_signed_quant(model, cfg)
    after = contexts(model, inputs)
    tensors = {o for n in model.graph.node for o in n.output}
    out = model.graph.output[0].name
    result["relu_signed_quant"] = {"signed_relu_quantizers_before": len(signed),
                                   "signed_relu_quantizers_after": len(signed_after_relu(model)),
                                   "tensors_compared": len(tensors),
                                   "max_abs_diff": largest(before, after, tensors),
                                   "output_range": max(float(np.max(np.abs(c[out]))) for c in before)}

    for _, step in finn_runner.FRONT[names.index("relu_signed_quant") + 1:names.index("shuffle_layouts")]:
        model = step(model, cfg)
    previous = ModelWrapper(copy.deepcopy(model.model))
    before = contexts(previous, inputs)
    model = shuffle_steps.step_amed_shuffle_layouts(model, cfg)
    after = contexts(model, inputs)
    out = model.graph.output[0].name
    made = {o for n in previous.graph.node for o in n.output} & {o for n in model.graph.node for o in n.output}
    same = [t for t in made if np.shape(before[0][t]) == np.shape(after[0][t])]  # (the shuffles' halves change)
    result["shuffle_layouts"] = {
        "output_max_abs_diff": largest(before, after, [out]),
        "tensors_compared": len(same), "max_abs_diff": largest(before, after, same),
        "output_range": max(float(np.max(np.abs(c[out]))) for c in before),
        "transposes_before": len(previous.get_nodes_by_op_type("Transpose")),
        "transposes": [list(get_by_name(n.attribute, "perm").ints) for n in model.get_nodes_by_op_type("Transpose")],
        "first_node": model.graph.node[0].op_type,
        "axes": {op: [get_by_name(n.attribute, "axis").i for n in model.get_nodes_by_op_type(op)]
                 for op in ("Split", "Concat")},
        "nchw_thresholds_inside": [n.name for n in model.get_nodes_by_op_type("MultiThreshold")
                                   if n.input[0] != model.graph.input[0].name
                                   and len(model.get_tensor_shape(n.input[0])) == 4
                                   and getCustomOp(n).get_nodeattr("data_layout") != "NHWC"],
        "ops": sorted({n.op_type for n in model.graph.node}),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
