"""FINN-side half of ``test_activation_steps``: run in FINN's environment as
``python activation_check.py MODEL.onnx SAMPLES``; prints one JSON object.

Takes an exported QONNX model through FINN's front steps up to ``step_tidy_up``, then applies
brevitas-amed's activation steps one at a time and executes the graph (qonnx/FINN's
executor) before and after each on the same random inputs: the largest output difference per
step, and what each step left in the graph.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "brevitas_amed" / "finn"))

from finn.util.settings import initialize_dummy_settings  # noqa: E402

initialize_dummy_settings()
import finn.xsi  # noqa: E402

finn.xsi.SimEngine = None  # as finn_runner: the build-steps module imports the simulator
import finn.builder.build_dataflow_steps as fs  # noqa: E402
from finn.builder.build_dataflow_config import DataflowBuildConfig  # noqa: E402
from finn.core.onnx_exec import execute_onnx  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402

import activation_steps  # noqa: E402
import finn_steps  # noqa: E402


def contexts(model: ModelWrapper, inputs: list[np.ndarray]) -> list[dict]:
    """Every tensor the graph computes, per input."""
    name = model.graph.input[0].name
    return [execute_onnx(model, {name: x}, return_full_exec_context=True) for x in inputs]


def compared(before: ModelWrapper, after: ModelWrapper) -> list[str]:
    """Tensors both graphs compute, except the lookups' indices (the count the input quantizer
    now outputs unbiased, by design): the graph output and every activation around the steps."""
    made = {o for n in before.graph.node for o in n.output} & {o for n in after.graph.node for o in n.output}
    return sorted(made - {n.input[0] for n in after.graph.node if n.op_type == "Cast"})


def hardsigmoid_thresholds_are_tight() -> bool:
    """For many thresholds t: x_t reaches t in float32 and the next float below does not."""
    alpha, beta = np.float32(1 / 6), np.float32(0.5)
    for t in np.linspace(0.001, 1.0, 997):
        x = np.float32(activation_steps.hardsigmoid_threshold(float(t), float(alpha), float(beta)))
        below = np.nextafter(x, np.float32(-np.inf))
        if not (min(np.float32(1), alpha * x + beta) >= np.float32(t) > min(np.float32(1), alpha * below + beta)):
            return False
    return (activation_steps.hardsigmoid_threshold(0.0, 1 / 6, 0.5) == -np.inf
            and activation_steps.hardsigmoid_threshold(1.5, 1 / 6, 0.5) == np.inf)


def sigmoid_thresholds_are_tight() -> bool:
    """For thresholds across (0, 1] (8-bit unsigned steps and odd values): onnxruntime's float32
    Sigmoid reaches t at x_t and not at the float below; x_t is near the float64 logit; the
    thresholds at or below 0 are -inf and those above 1 +inf."""
    sigmoid = activation_steps.onnxruntime_sigmoid()
    t = np.concatenate([(np.arange(255) + 0.5) / 255, np.linspace(1e-6, 1.0, 1001), [1e-9, 0.999999]])
    x = activation_steps.sigmoid_thresholds(t).astype(np.float32)
    t32 = t.astype(np.float32)
    finite = np.isfinite(x)
    below = np.nextafter(x[finite], np.float32(-np.inf))
    tight = bool(np.all(sigmoid(x[finite]) >= t32[finite]) and np.all(sigmoid(below) < t32[finite]))
    inner = finite & (t > 1e-4) & (t < 1 - 1e-4)
    near = bool(np.allclose(x[inner], np.log(t[inner] / (1 - t[inner])), atol=1e-4))
    ends = activation_steps.sigmoid_thresholds(np.array([0.0, -1.0, 1.5]))
    return tight and near and finite.sum() > 1000 and list(ends) == [-np.inf, -np.inf, np.inf]


def main() -> None:
    path, samples = sys.argv[1], int(sys.argv[2])
    model = ModelWrapper(path)
    cfg = DataflowBuildConfig(output_dir=str(Path(path).parent / "finn_front"), synth_clk_period_ns=10.0,
                              generate_outputs=[])
    for step in (finn_steps.step_amed_bias_quant_shapes, fs.step_qonnx_to_finn, fs.step_tidy_up):
        model = step(model, cfg)
    rng = np.random.default_rng(0)
    shape = model.get_tensor_shape(model.graph.input[0].name)
    inputs = [rng.normal(0.0, 1.0, size=shape).astype(np.float32) for _ in range(samples)]
    result = {"ops_before": sorted({n.op_type for n in model.graph.node}), "steps": {},
              **{op.lower(): len(model.get_nodes_by_op_type(op)) for op in ("HardSwish", "HardSigmoid", "Sigmoid")}}
    before = contexts(model, inputs)
    for step in (activation_steps.step_amed_activation_thresholds, activation_steps.step_amed_activation_lookup):
        previous = ModelWrapper(copy.deepcopy(model.model))  # steps edit the graph they are given
        model = step(model, cfg)
        after = contexts(model, inputs)
        names = compared(previous, model)
        out = model.graph.output[0].name
        result["steps"][step.__name__] = {
            "max_abs_diff": max(float(np.max(np.abs(a[t] - b[t]))) for a, b in zip(before, after) for t in names),
            "output_max_abs_diff": max(float(np.max(np.abs(a[out] - b[out]))) for a, b in zip(before, after)),
            "tensors_compared": len(names),
            "output_range": max(float(np.max(np.abs(a[out]))) for a in before),
            "ops": sorted({n.op_type for n in model.graph.node}),
            "gathers": len(model.get_nodes_by_op_type("Gather")),
            "sigmoids": len(model.get_nodes_by_op_type("Sigmoid")),
            "table_types": [model.get_tensor_datatype(n.input[0]).name for n in model.get_nodes_by_op_type("Gather")],
        }
        before = after
    result["tight_hardsigmoid_thresholds"] = hardsigmoid_thresholds_are_tight()
    result["tight_sigmoid_thresholds"] = sigmoid_thresholds_are_tight()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
