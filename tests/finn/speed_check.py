"""FINN-side half of ``test_qonnx_speed``: run in FINN's environment as
``python speed_check.py MODEL.onnx plain|linear``; prints one JSON object.

Takes an exported QONNX model through the runner's front steps (FINN's QONNX conversion and
tidy-up, brevitas-amed's activation steps, streamlining, pooling head, integer I/O) with qonnx's
own graph helpers (``plain``) or with ``qonnx_speed``'s linear ones (``linear``), and prints a
digest of the graph after each step, tensor names made canonical: the two runs must print the
same digests.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "brevitas_amed" / "finn"))

from finn.util.settings import initialize_dummy_settings  # noqa: E402

initialize_dummy_settings()
import finn.xsi  # noqa: E402

finn.xsi.SimEngine = None  # as finn_runner: the build-steps module imports the simulator
import finn.builder.build_dataflow_steps as fs  # noqa: E402
from finn.builder.build_dataflow_config import DataflowBuildConfig  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402

import activation_steps  # noqa: E402
import finn_steps  # noqa: E402
import qonnx_speed  # noqa: E402

def canonical_digest(model: ModelWrapper) -> str:
    """A digest of the graph with every tensor renamed by where it first appears (inputs, then each
    node's inputs and outputs in order) and the name-keyed lists sorted: FINN's QONNX conversion and
    the lookup steps name some tensors at random (qonnx's GiveRandomTensorNames)."""
    proto = copy.deepcopy(model.model)
    g, names = proto.graph, {}
    for name in [x.name for x in g.input] + [t for n in g.node for t in (*n.input, *n.output)]:
        if name and name not in names:
            names[name] = f"t{len(names)}"
    rename = lambda t: names.get(t, t)  # noqa: E731
    for container in (g.input, g.output, g.value_info, g.initializer):
        for x in container:
            x.name = rename(x.name)
    for a in g.quantization_annotation:
        a.tensor_name = rename(a.tensor_name)
    for n in g.node:
        for field in (n.input, n.output):
            for k, t in enumerate(field):
                field[k] = rename(t)
    for container, key in ((g.value_info, "name"), (g.initializer, "name"), (g.quantization_annotation, "tensor_name")):
        items = sorted((copy.deepcopy(x) for x in container), key=lambda x: getattr(x, key))
        del container[:]
        container.extend(items)
    return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()


STEPS = [finn_steps.step_amed_bias_quant_shapes, fs.step_qonnx_to_finn, fs.step_tidy_up,
         activation_steps.step_amed_activation_thresholds, activation_steps.step_amed_activation_lookup,
         finn_steps.step_amed_streamline, activation_steps.step_amed_lookup_layouts, finn_steps.step_amed_pool_head,
         finn_steps.step_amed_integer_io]


def main(model_path: str, mode: str) -> None:
    installed = qonnx_speed.use_linear_graph_helpers() if mode == "linear" else False
    cfg = DataflowBuildConfig(output_dir=str(Path(model_path).parent / f"out_{mode}"), synth_clk_period_ns=10.0,
                              generate_outputs=[])
    model, digests, start = ModelWrapper(model_path), [], time.time()
    for step in STEPS:
        model = step(model, cfg)
        digests.append([step.__name__, canonical_digest(model)])
    print(json.dumps({"installed": installed, "digests": digests, "seconds": time.time() - start,
                      "nodes": len(model.graph.node)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
