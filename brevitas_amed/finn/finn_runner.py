"""Run FINN's dataflow flow on one exported QONNX model, up to FINN's estimate reports.

A standalone script for the FINN environment (``.finn-venv/bin/python finn_runner.py MODEL OUT``):
it imports ``finn`` and never ``brevitas_amed`` (FINN pins its own torch, brevitas and onnx).
It writes ``OUT/result.json``: which steps ran, FINN's per-layer datatypes, folding, cycles and
resource estimates, the estimated throughput, the host-side nodes before and after the
accelerator, and whether the streamlined graph still computes what the QONNX model computes.

``finn.builder.build_dataflow_steps`` imports FINN's XSI simulator at import time, which needs
Vivado even though the estimate steps never simulate. The one shim here: ``finn.xsi.SimEngine``
is set to ``None`` before that import, so the module loads; no step used here touches it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finn_steps and qonnx_speed beside this file

from finn.util.settings import initialize_dummy_settings  # noqa: E402

initialize_dummy_settings()
import finn.xsi  # noqa: E402

finn.xsi.SimEngine = None  # the shim: see the module docstring
import finn.builder.build_dataflow_steps as fs  # noqa: E402
from finn.analysis.fpgadataflow.res_estimation import res_estimation  # noqa: E402
from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType  # noqa: E402
from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles  # noqa: E402
from finn.transformation.fpgadataflow.set_folding import SetFolding  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.custom_op.registry import getCustomOp  # noqa: E402

import activation_steps  # noqa: E402
import conv_steps  # noqa: E402
import finn_steps  # noqa: E402
import qonnx_speed  # noqa: E402
import shuffle_steps  # noqa: E402

qonnx_speed.use_linear_graph_helpers()  # qonnx's graph helpers in linear time: same graphs

MATRIX_OPS = ("MVAU", "VVAU")  # FINN's matrix-vector and vector-vector (depthwise) units
RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")

FRONT = [("bias_quant_shapes", finn_steps.step_amed_bias_quant_shapes),
         ("grouped_convs", conv_steps.step_amed_grouped_convs),
         ("relu_signed_quant", shuffle_steps.step_amed_relu_signed_quant),
         ("qonnx_to_finn", fs.step_qonnx_to_finn), ("tidy_up", fs.step_tidy_up),
         ("activation_thresholds", activation_steps.step_amed_activation_thresholds),
         ("activation_lookup", activation_steps.step_amed_activation_lookup),
         ("streamline", finn_steps.step_amed_streamline),
         ("lookup_layouts", activation_steps.step_amed_lookup_layouts), ("pool_head", finn_steps.step_amed_pool_head),
         ("shuffle_layouts", shuffle_steps.step_amed_shuffle_layouts),
         ("integer_io", finn_steps.step_amed_integer_io)]
BACK = [("lookup_to_hw", activation_steps.step_amed_lookup_to_hw), ("convert_to_hw", fs.step_convert_to_hw),
        ("create_dataflow_partition", fs.step_create_dataflow_partition),
        ("specialize_layers", fs.step_specialize_layers), ("shuffle_to_hw", shuffle_steps.step_amed_shuffle_to_hw)]
FOLD = [("target_fps_parallelization", fs.step_target_fps_parallelization),
        ("apply_folding_config", fs.step_apply_folding_config)]
ESTIMATE = [("generate_estimate_reports", fs.step_generate_estimate_reports)]


def weighted_layers(model: ModelWrapper) -> list[dict]:
    """The QONNX model's weight quantizers in graph order: layer name, integer weights, bits."""
    from qonnx.custom_op.general.intquant import int_quant

    layers = []
    for node in model.graph.node:
        if node.op_type != "Quant" or model.get_initializer(node.input[0]) is None:
            continue
        consumers = model.find_consumers(node.output[0]) or []
        if not any(c.op_type in ("Conv", "Gemm", "MatMul") and c.input[1] == node.output[0] for c in consumers):
            continue
        w, scale, zp, bits = (model.get_initializer(i) for i in node.input)
        attrs = {a.name: a for a in node.attribute}
        q = int_quant(w, scale, zp, bits, attrs["signed"].i, attrs["narrow"].i,
                      attrs["rounding_mode"].s.decode() if "rounding_mode" in attrs else "ROUND")
        ints = np.round(q / scale).astype(np.int64)
        name = node.input[0][:-len(".weight")] if node.input[0].endswith(".weight") else node.input[0]
        layers.append({"layer": name, "bits": int(bits), "signature": sorted(ints.ravel().tolist())})
    return layers


def match_layers(hw_nodes: list[dict], qonnx_layers: list[dict]) -> None:
    """Tie each MVAU/VVAU to the QONNX layer whose integer weights it holds (same multiset of
    values); FINN transposes and reshapes weights but keeps their values. A grouped convolution's
    block-diagonal MVAU (``conv_steps``) holds its weights plus zeros: where no layer has the same
    multiset, the non-zero weights decide."""
    free = list(qonnx_layers)
    for node in hw_nodes:
        signature = node.pop("signature")
        hit = next((q for q in free if q["signature"] == signature), None)
        if hit is None and signature is not None:
            nonzero = [v for v in signature if v != 0]
            hit = next((q for q in free if [v for v in q["signature"] if v != 0] == nonzero), None)
        node["layer"] = hit["layer"] if hit else None
        node["qonnx_weight_bits"] = hit["bits"] if hit else None
        if hit:
            free.remove(hit)


def matrix_nodes(model: ModelWrapper, cycles: dict, res: dict) -> list[dict]:
    out = []
    for node in model.graph.node:
        if not node.op_type.startswith(MATRIX_OPS):
            continue
        inst = getCustomOp(node)
        w = model.get_initializer(node.input[1])
        out.append({
            "node": node.name, "op_type": node.op_type,
            "weight_dtype": inst.get_nodeattr("weightDataType"), "input_dtype": inst.get_input_datatype(0).name,
            "output_dtype": inst.get_output_datatype(0).name,
            "PE": inst.get_nodeattr("PE"), "SIMD": inst.get_nodeattr("SIMD") if node.op_type.startswith("MVAU") else 1,
            "cycles": int(cycles.get(node.name, 0)), **{k: res.get(node.name, {}).get(k, 0) for k in RESOURCES},
            "signature": sorted(np.round(w).astype(np.int64).ravel().tolist()) if w is not None else None,
        })
    return out


def input_quantizer(model: ModelWrapper) -> dict | None:
    """The exported input quantizer (the ``Quant`` on the graph input): what the host applies."""
    node = next((n for n in model.graph.node if n.op_type == "Quant" and n.input[0] == model.graph.input[0].name), None)
    if node is None:
        return None
    attrs = {a.name: a for a in node.attribute}
    scale, zp, bits = (model.get_initializer(i) for i in node.input[1:])
    return {"scale": np.asarray(scale).astype(float).tolist(), "zero_point": np.asarray(zp).astype(float).tolist(),
            "bits": int(bits), "signed": bool(attrs["signed"].i), "narrow": bool(attrs["narrow"].i),
            "rounding_mode": attrs["rounding_mode"].s.decode() if "rounding_mode" in attrs else "ROUND"}


def host_input(x: np.ndarray, quant: dict | None) -> np.ndarray:
    """What the host feeds the accelerator for a float input ``x``: the input quantizer's integers."""
    from qonnx.custom_op.general.intquant import int_quant

    if quant is None:
        return x
    scale = np.asarray(quant["scale"], dtype=np.float32)
    q = int_quant(x, scale, np.asarray(quant["zero_point"], dtype=np.float32), np.float32(quant["bits"]), quant["signed"],
                  quant["narrow"], quant["rounding_mode"])
    return np.round(q / scale).astype(np.float32)


def im2col_any_map(original):
    """qonnx's ``Im2Col`` execution, also for maps of one row or column with a 2-d kernel or padding.

    qonnx refuses those ("Unexpected kernel shape and padding for input image of dimensions
    (N, 1, W, C)"): a guard for 1-d convolutions, whose height 1 is a dummy axis. The late stages
    of a network at a small input are real 1-pixel maps (3x3 or 5x5 kernels, padded), which qonnx's
    own index-based ``im2col_indices_nchw`` computes like any other map; only the check uses this."""
    from qonnx.custom_op.general.im2col import compute_conv_output_dim, im2col_indices_nchw

    def execute_node(self, context, graph):
        x = context[self.onnx_node.input[0]]
        n, h, w, c = x.shape
        if h != 1 and w != 1:
            return original(self, context, graph)
        (k_h, k_w), (s_h, s_w) = self.get_nodeattr("kernel_size"), self.get_nodeattr("stride")
        (d_h, d_w), pad = self.get_nodeattr("dilations"), self.get_nodeattr("pad_amount")
        out_h = compute_conv_output_dim(h, k_h, s_h, pad[0] + pad[2], d_h)
        out_w = compute_conv_output_dim(w, k_w, s_w, pad[1] + pad[3], d_w)
        cols = im2col_indices_nchw(x.transpose(0, 3, 1, 2), h, w, k_h, k_w, pad, s_h, s_w,
                                   pad_val=self.get_nodeattr("pad_value"), dilation_h=d_h, dilation_w=d_w)
        cols = cols.reshape(n, c, k_h, k_w, out_h, out_w).transpose(0, 4, 5, 2, 3, 1)
        context[self.onnx_node.output[0]] = cols.reshape(n, out_h, out_w, k_h * k_w * c)

    return execute_node


def streamlined_difference(qonnx_model: ModelWrapper, model: ModelWrapper, samples: int, seed: int = 0) -> float:
    """Largest output difference between the QONNX model on float inputs and the streamlined FINN
    graph fed what the host feeds it (the integers of the input quantizer), times the output
    scale the host applies; FINN's executor runs both (``Im2Col`` also on 1-pixel maps:
    ``im2col_any_map``)."""
    from finn.core.onnx_exec import execute_onnx
    from qonnx.custom_op.general.im2col import Im2Col

    original = Im2Col.execute_node
    Im2Col.execute_node = im2col_any_map(original)
    try:
        return largest_difference(qonnx_model, model, samples, seed, execute_onnx)
    finally:
        Im2Col.execute_node = original


def largest_difference(qonnx_model: ModelWrapper, model: ModelWrapper, samples: int, seed: int, execute_onnx) -> float:
    rng = np.random.default_rng(seed)
    quant = input_quantizer(qonnx_model) if model.get_metadata_prop("amed_input_dtype") else None
    out_scale = np.asarray(json.loads(model.get_metadata_prop("amed_output_scale") or "1.0"), dtype=np.float32)
    name_q, name_f = qonnx_model.graph.input[0].name, model.graph.input[0].name
    shape = qonnx_model.get_tensor_shape(name_q)
    worst = 0.0
    for _ in range(samples):
        x = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
        a = execute_onnx(qonnx_model, {name_q: x})[qonnx_model.graph.output[0].name]
        b = execute_onnx(model, {name_f: host_input(x, quant)})[model.graph.output[0].name] * out_scale
        worst = max(worst, float(np.max(np.abs(a.reshape(b.shape) - b))))
    return worst


def fold_and_estimate(model: ModelWrapper, cfg: DataflowBuildConfig) -> tuple[ModelWrapper, dict, dict, dict]:
    for _, step in FOLD + ESTIMATE:
        model = step(model, cfg)
    report = Path(cfg.output_dir) / "report"
    cycles = json.loads((report / "estimate_layer_cycles.json").read_text())
    res = json.loads((report / "estimate_layer_resources.json").read_text())
    perf = json.loads((report / "estimate_network_performance.json").read_text())
    return model, cycles, res, perf


def fit_lut_budget(model: ModelWrapper, cfg: DataflowBuildConfig, budget: int, log: list) -> int:
    """The highest target throughput (frames/s, bisected on a log scale) whose folding FINN
    estimates at no more than ``budget`` LUTs; SetFolding itself only targets cycles."""
    clock = 1e9 / cfg.synth_clk_period_ns
    lo, hi = 1.0, clock  # at most one frame per cycle
    for _ in range(18):
        mid = (lo * hi) ** 0.5
        trial = model.transform(SetFolding(int(clock / mid), mvau_wwidth_max=cfg.mvau_wwidth_max))
        trial = trial.transform(AnnotateCycles())
        luts = sum(v.get("LUT", 0) for v in trial.analysis(lambda m: res_estimation(m, cfg.fpga_part)).values())
        log.append({"target_fps": mid, "LUT": luts})
        lo, hi = (mid, hi) if luts <= budget else (lo, mid)
    return int(lo)


def run(model_path: Path, out: Path, args: argparse.Namespace) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cfg = DataflowBuildConfig(output_dir=str(out), fpga_part=args.fpga_part, synth_clk_period_ns=args.clk_ns,
                              target_fps=args.target_fps, generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
                              folding_config_file=Path(args.folding_config) if args.folding_config else None,
                              save_intermediate_models=True)
    result = {"model": str(model_path), "fpga_part": args.fpga_part, "clk_ns": args.clk_ns, "steps": [], "ok": False}
    qonnx_model = ModelWrapper(str(model_path))
    layers = weighted_layers(qonnx_model)
    steps = FRONT + BACK
    names = [name for name, _ in steps]
    if args.start_from:  # resume from the model an earlier run saved before that step
        first = names.index(args.start_from)
        steps = steps[first:]
        model = ModelWrapper(str(out / f"after_{names[first - 1]}.onnx"))
        model_io = ModelWrapper(str(out / "after_integer_io.onnx")) if first > names.index("integer_io") else None
        if first > names.index("convert_to_hw"):
            before_partition = ModelWrapper(str(out / "after_convert_to_hw.onnx"))
    else:
        model = ModelWrapper(str(model_path))
    step_name = None
    try:
        for step_name, step in steps:
            start = time.time()
            model = step(model, cfg)
            result["steps"].append({"step": step_name, "seconds": round(time.time() - start, 3)})
            model.save(str(out / f"after_{step_name}.onnx"))
            if step_name == "integer_io" and args.verify_samples:
                try:
                    result["streamlined_max_abs_diff"] = streamlined_difference(
                        ModelWrapper(str(model_path)), model, args.verify_samples)
                except Exception as exc:  # noqa: BLE001 - a limit of the executor, not of the graph
                    result["streamlined_check_error"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            if step_name == "integer_io":
                model_io = model
            if step_name == "convert_to_hw":
                before_partition = model
        if args.lut_budget:
            step_name = "lut_budget_search"
            result["lut_budget"] = {"budget": args.lut_budget, "tries": []}
            cfg.target_fps = fit_lut_budget(model, cfg, args.lut_budget, result["lut_budget"]["tries"])
        result["target_fps"] = cfg.target_fps
        step_name = "fold_and_estimate"
        start = time.time()
        model, cycles, res, perf = fold_and_estimate(model, cfg)
        result["steps"].append({"step": "target_fps_parallelization+apply_folding_config+generate_estimate_reports",
                                "seconds": round(time.time() - start, 3)})
        step_name = "collect_results"
        collect(result, model, before_partition, model_io, qonnx_model, layers, cycles, res, perf)
    except Exception as exc:  # noqa: BLE001 - reported to the caller, with the step that failed
        result.update(failed_step=step_name, error=f"{type(exc).__name__}: {str(exc).strip()[:2000]}",
                      traceback=traceback.format_exc()[-4000:])
    return result


def collect(result: dict, model, before_partition, model_io, qonnx_model, layers, cycles, res, perf) -> None:
    """FINN's per-layer datatypes and estimates, tied to the QONNX layers, and the host's part."""
    nodes = matrix_nodes(model, cycles, res)
    match_layers(nodes, layers)
    host = [n for n in before_partition.graph.node if not n.domain.startswith("finn.custom_op.fpgadataflow")]
    first_hw = next(i for i, n in enumerate(before_partition.graph.node) if n.domain.startswith("finn.custom_op.fpgadataflow"))
    result.update(
        ok=True, layers=nodes, qonnx_layers=[{k: q[k] for k in ("layer", "bits")} for q in layers],
        totals={k: res.get("total", {}).get(k, 0) for k in RESOURCES},
        performance=perf, cycles_per_layer=cycles,
        input_quantizer=input_quantizer(qonnx_model),
        output_scale=json.loads(model_io.get_metadata_prop("amed_output_scale") or "null"),
        accelerator_input_dtype=model.get_tensor_datatype(model.graph.input[0].name).name,
        accelerator_output_dtype=model.get_tensor_datatype(model.graph.output[0].name).name,
        host_before=[f"{n.op_type}" for n in host if list(before_partition.graph.node).index(n) < first_hw],
        host_after=[f"{n.op_type}" for n in host if list(before_partition.graph.node).index(n) > first_hw],
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="an exported QONNX model (.onnx)")
    p.add_argument("out", type=Path, help="folder for FINN's reports and result.json")
    p.add_argument("--fpga-part", default="xc7z020clg400-1")
    p.add_argument("--clk-ns", type=float, default=10.0, help="target clock period (ns)")
    p.add_argument("--target-fps", type=int, default=None, help="fold to reach this throughput (frames/s)")
    p.add_argument("--lut-budget", type=int, default=None, help="fold for the most frames/s within this many LUTs")
    p.add_argument("--folding-config", default=None, help="a FINN folding config JSON applied after folding")
    p.add_argument("--verify-samples", type=int, default=2, help="random inputs for the streamlining check")
    p.add_argument("--start-from", choices=[name for name, _ in FRONT + BACK][1:], default=None,
                   help="resume at this step from OUT/after_<previous step>.onnx of an earlier run")
    args = p.parse_args(argv)
    result = run(args.model, args.out, args)
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result.get(k) for k in ("model", "ok", "failed_step", "error", "target_fps")}))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
