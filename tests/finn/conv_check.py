"""FINN-side half of ``test_conv_steps``: run in FINN's environment; prints one JSON object.

    python conv_check.py step MODEL.onnx SAMPLES {dense,split}
        applies ``step_amed_grouped_convs`` (dense) or ``step_amed_grouped_convs_split`` (split)
        to the exported QONNX model and executes the graph
        (qonnx's executor) before and after on the same random inputs: the largest difference on
        every tensor both compute, and the convolutions' groups before and after.
    python conv_check.py weights MODEL.onnx FINN_MODEL.onnx
        ties each MVAU/VVAU of a FINN model (e.g. the runner's ``after_specialize_layers.onnx``) to
        the QONNX layer with the same nonzero integer weights (a grouped layer's block-diagonal
        MVAU holds its weights plus zeros), or to one group of a grouped layer (after the split),
        and lists its FINN weight datatype and the layer's bits.
    python conv_check.py flow MODEL.onnx OUT
        FINN's runner (``finn_runner.py MODEL OUT --target-fps 1000``) with the split variant in
        place of ``step_amed_grouped_convs``.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "brevitas_amed" / "finn"))

from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.core.onnx_exec import execute_onnx  # noqa: E402
from qonnx.custom_op.registry import getCustomOp  # noqa: E402

import conv_steps  # noqa: E402
import finn_runner  # noqa: E402  (its weighted_layers: the QONNX layers, bits and integer weights)


STEPS = {"dense": conv_steps.step_amed_grouped_convs, "split": conv_steps.step_amed_grouped_convs_split}


def groups(model: ModelWrapper) -> list[int]:
    return [conv_steps.conv_group(n) for n in model.graph.node if n.op_type == "Conv"]


def check_step(path: str, samples: int, variant: str) -> dict:
    before = ModelWrapper(path)
    after = STEPS[variant](ModelWrapper(copy.deepcopy(before.model)), None)
    name = before.graph.input[0].name
    rng = np.random.default_rng(0)
    shape = before.get_tensor_shape(name)
    made = {o for n in before.graph.node for o in n.output} & {o for n in after.graph.node for o in n.output}
    worst, worst_out, compared = 0.0, 0.0, set()
    for _ in range(samples):
        x = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
        a = execute_onnx(before, {name: x}, return_full_exec_context=True)
        b = execute_onnx(after, {name: x}, return_full_exec_context=True)
        for t in made:
            if a[t].shape == b[t].shape:  # the weight quantizers' outputs are now dense
                compared.add(t)
                worst = max(worst, float(np.max(np.abs(a[t] - b[t]))))
        out = before.graph.output[0].name
        worst_out = max(worst_out, float(np.max(np.abs(a[out] - b[out]))))
    return {"groups_before": groups(before), "groups_after": groups(after), "max_abs_diff": worst,
            "ops_after": sorted({n.op_type for n in after.graph.node}),
            "output_max_abs_diff": worst_out, "tensors_compared": len(compared),
            "recorded": json.loads(after.get_metadata_prop(conv_steps.METADATA_KEY) or "{}")}


def group_slices(model: ModelWrapper) -> dict[str, list[list[int]]]:
    """Per grouped layer (named as ``finn_runner.weighted_layers`` names it): the nonzero integer
    weights of each group."""
    from qonnx.custom_op.general.intquant import int_quant

    slices = {}
    for conv in model.graph.node:
        if not conv_steps.is_grouped_not_depthwise(model, conv):
            continue
        quant = model.find_producer(conv.input[1])
        w, scale, zp, bits = (model.get_initializer(i) for i in quant.input)
        attrs = {a.name: a for a in quant.attribute}
        q = int_quant(w, scale, zp, bits, attrs["signed"].i, attrs["narrow"].i, attrs["rounding_mode"].s.decode())
        ints = np.round(q / scale)
        name = quant.input[0][:-len(".weight")] if quant.input[0].endswith(".weight") else quant.input[0]
        rows = ints.shape[0] // conv_steps.conv_group(conv)
        slices[name] = [conv_steps.nonzero_signature(ints[i:i + rows]) for i in range(0, ints.shape[0], rows)]
    return slices


def check_weights(path: str, finn_path: str) -> dict:
    qonnx_model = ModelWrapper(path)
    layers = finn_runner.weighted_layers(qonnx_model)
    candidates = [(q["layer"], q["bits"], "all", [v for v in q["signature"] if v != 0]) for q in layers]
    bits = {q["layer"]: q["bits"] for q in layers}
    candidates += [(layer, bits[layer], g, sig) for layer, sigs in group_slices(qonnx_model).items()
                   for g, sig in enumerate(sigs)]
    model = ModelWrapper(finn_path)
    nodes = []
    for node in model.graph.node:
        if not node.op_type.startswith(finn_runner.MATRIX_OPS):
            continue
        w = model.get_initializer(node.input[1])
        sig = conv_steps.nonzero_signature(w)
        hit = next((c for c in candidates if c[3] == sig), None)
        if hit:
            candidates.remove(hit)
        nodes.append({"node": node.name, "op_type": node.op_type, "layer": hit[0] if hit else None,
                      "bits": hit[1] if hit else None, "part": hit[2] if hit else None,
                      "weight_dtype": getCustomOp(node).get_nodeattr("weightDataType"),
                      "zero_fraction": float(np.mean(np.round(w) == 0))})
    carried = {n["layer"] for n in nodes if n["part"] == "all"}
    parts = {layer: sum(n["layer"] == layer for n in nodes) for layer in group_slices(qonnx_model)}
    carried |= {layer for layer, count in parts.items() if count == len(group_slices(qonnx_model)[layer])}
    return {"nodes": nodes, "unmatched_layers": [q["layer"] for q in layers if q["layer"] not in carried]}


def run_flow(path: str, out: str) -> dict:
    names = [name for name, _ in finn_runner.FRONT]
    finn_runner.FRONT[names.index("grouped_convs")] = ("grouped_convs", conv_steps.step_amed_grouped_convs_split)
    return {"rc": finn_runner.main([path, out, "--target-fps", "1000"])}


def main() -> None:
    mode = sys.argv[1]
    if mode == "step":
        result = check_step(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif mode == "weights":
        result = check_weights(sys.argv[2], sys.argv[3])
    elif mode == "flow":
        result = run_flow(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown mode {mode!r}: step, weights or flow")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
