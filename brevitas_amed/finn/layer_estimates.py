"""FINN's own estimates for single layers: one hardware node per layer, folded by FINN's SetFolding.

A standalone script for the FINN environment (``.finn-venv/bin/python layer_estimates.py
REQUEST.json RESULT.json``), run by the ``finn`` latency backend (``backend.py``): it imports
``finn`` and never ``brevitas_amed``. For each requested layer it builds the node FINN's
``step_convert_to_hw`` makes of it:

* ``MVAU`` (a dense convolution lowered by im2col, or a linear layer): ``MW = Cin*kh*kw``,
  ``MH = Cout``, ``numInputVectors = [1, out_h, out_w]``, no activation (the thresholds FINN fuses
  into an MVAU belong to the next layer's input bits);
* ``VVAU`` (a depthwise convolution) behind the depthwise ``ConvolutionInputGenerator`` that
  feeds it in FINN (SetFolding folds the two together; only the VVAU is reported);

with the requested weight and input datatypes, an accumulator FINN minimises from the datatypes
(``minimize_accumulator_width(datatype_only=True)``), weights of the narrow signed range
(Brevitas' default), and the profile's preferred implementation style. FINN's
``SpecializeLayers`` picks the HLS or RTL variant, ``SetFolding`` chooses PE/SIMD for the
target cycles per frame, and the node's own ``get_exp_cycles``, ``lut_estimation``,
``bram_estimation``, ``uram_estimation`` and ``dsp_estimation`` give the result.

RESULT.json: ``{"finn_version": ..., "results": [{"op_type", "PE", "SIMD", "cycles", "LUT",
"BRAM_18K", "URAM", "DSP"} or {"error": ...}, ...]}``, one entry per request, in order.
"""

from __future__ import annotations

import json
import sys
import traceback
from importlib import metadata

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

from finn.util.settings import initialize_dummy_settings

initialize_dummy_settings()
from finn.transformation.fpgadataflow.set_folding import SetFolding  # noqa: E402
from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers  # noqa: E402

DOMAIN = "finn.custom_op.fpgadataflow"


def narrow_weights(shape: tuple[int, ...], dtype: DataType) -> np.ndarray:
    """Deterministic weights covering the narrow signed range of ``dtype`` (bipolar: +-1)."""
    if dtype == DataType["BIPOLAR"]:
        values = np.array([-1.0, 1.0])
    else:
        values = np.arange(dtype.min() + 1, dtype.max() + 1, dtype=np.float64)
    return np.resize(values, shape).astype(np.float32)


def tensor(name: str, shape: list[int]):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def mvau_model(req: dict) -> ModelWrapper:
    mw, mh, (oh, ow) = req["mw"], req["mh"], req["vectors"]
    node = helper.make_node(
        "MVAU", ["inp", "weights"], ["out"], domain=DOMAIN, backend="fpgadataflow", name="layer",
        MW=mw, MH=mh, SIMD=1, PE=1, inputDataType=req["input_dtype"], weightDataType=req["weight_dtype"],
        outputDataType="INT32", noActivation=1, binaryXnorMode=0, numInputVectors=[1, oh, ow],
        preferred_impl_style=req["impl_style"])
    graph = helper.make_graph([node], "layer", [tensor("inp", [1, oh, ow, mw])], [tensor("out", [1, oh, ow, mh])])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="brevitas-amed"))
    model.set_initializer("weights", narrow_weights((mw, mh), DataType[req["weight_dtype"]]))
    return model


def vvau_model(req: dict) -> ModelWrapper:
    ch, (kh, kw), (ih, iw), (oh, ow) = req["channels"], req["kernel"], req["ifm"], req["ofm"]
    swu = helper.make_node(
        "ConvolutionInputGenerator", ["inp"], ["windows"], domain=DOMAIN, backend="fpgadataflow", name="swu",
        ConvKernelDim=[kh, kw], IFMChannels=ch, IFMDim=[ih, iw], OFMDim=[oh, ow], SIMD=1, Stride=req["stride"],
        Dilation=[1, 1], inputDataType=req["input_dtype"], outputDataType=req["input_dtype"], depthwise=1)
    vvau = helper.make_node(
        "VVAU", ["windows", "weights"], ["out"], domain=DOMAIN, backend="fpgadataflow", name="layer",
        PE=1, SIMD=1, Dim=[oh, ow], Channels=ch, Kernel=[kh, kw], inputDataType=req["input_dtype"],
        weightDataType=req["weight_dtype"], outputDataType="INT32", noActivation=1,
        preferred_impl_style=req["impl_style"])
    graph = helper.make_graph([swu, vvau], "layer", [tensor("inp", [1, ih, iw, ch])], [tensor("out", [1, oh, ow, ch])],
                              value_info=[tensor("windows", [1, oh, ow, kh * kw * ch])])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="brevitas-amed"))
    model.set_initializer("weights", narrow_weights((ch, 1, kh, kw), DataType[req["weight_dtype"]]))
    return model


def estimate(req: dict, part: str, target_cycles: int, mvau_wwidth_max: int) -> dict:
    """FINN's folding and estimates of one layer (see the module docstring)."""
    model = mvau_model(req) if req["op"] == "MVAU" else vvau_model(req)
    model.set_tensor_datatype(model.graph.input[0].name, DataType[req["input_dtype"]])
    model.set_tensor_datatype("weights", DataType[req["weight_dtype"]])
    layer = getCustomOp(model.get_node_from_name("layer"))
    layer.minimize_accumulator_width(model, datatype_only=True)
    model.set_tensor_datatype("out", DataType[layer.get_nodeattr("outputDataType")])
    model = model.transform(SpecializeLayers(part))
    model = model.transform(SetFolding(target_cycles, mvau_wwidth_max=mvau_wwidth_max))
    node = next(n for n in model.graph.node if n.op_type.startswith(req["op"]))
    inst = getCustomOp(node)
    return {"op_type": node.op_type, "PE": int(inst.get_nodeattr("PE")), "SIMD": int(inst.get_nodeattr("SIMD")),
            "cycles": int(inst.get_exp_cycles()), "LUT": int(inst.lut_estimation(part)),
            "BRAM_18K": int(inst.bram_estimation(part)), "URAM": int(inst.uram_estimation(part)),
            "DSP": int(inst.dsp_estimation(part))}


def main(argv: list[str]) -> int:
    request = json.loads(open(argv[0]).read())
    part, target, wwidth = request["part"], int(request["target_cycles"]), int(request["mvau_wwidth_max"])
    results = []
    for req in request["layers"]:
        try:
            results.append(estimate(req, part, target, wwidth))
        except Exception as exc:  # noqa: BLE001 - reported per layer; the caller names the layer
            results.append({"error": f"{type(exc).__name__}: {str(exc).strip()[:500]}",
                            "traceback": traceback.format_exc()[-2000:]})
    with open(argv[1], "w") as out:
        json.dump({"finn_version": metadata.version("finn-plus"), "results": results}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
