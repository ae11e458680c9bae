"""Float torch model -> :class:`QuantizedModel` through Brevitas' graph quantizer.

The conversion goes through Brevitas' ``preprocess_for_quantize`` then ``quantize``, configured
with the maps of :mod:`brevitas_amed.quant.quantizers`, which yields an integer-only graph FINN
accepts: quantized ReLUs, requantized residual adds, an input quantizer. The policy then pins the
first and last layers and the requantizers that feed no compute layer.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from brevitas.graph.quantize import preprocess_for_quantize
from brevitas.graph.quantize import quantize as brevitas_quantize

from brevitas_amed.quant.knobs import find_knobs
from brevitas_amed.quant.model import QuantizedModel
from brevitas_amed.quant.policy import LayerPolicy, QuantPolicy
from brevitas_amed.quant.quantizers import (COMPUTE_LAYERS, QUANT_ACT_MAP, QUANT_IDENTITY_MAP, REMOVED_MODULE_NAMES,
                                            SUPPORTED_MODULES, compute_layer_map)
from brevitas_amed.quant.status import disable_quantization

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Tensor methods a QuantTensor lacks, run as the torch functions they equal (which Brevitas
# evaluates on the dequantized values; each part is requantized where it is used).
_METHODS_AS_FUNCTIONS = {"chunk": torch.chunk, "split": torch.split, "tensor_split": torch.tensor_split,
                         "unbind": torch.unbind}


class UnsupportedModuleError(TypeError):
    """A module in the float model has no quantized counterpart here."""


def check_supported(model: nn.Module) -> None:
    """Raise :class:`UnsupportedModuleError` naming the first module we cannot quantize."""
    for path, module in model.named_modules():
        if path == "" or isinstance(module, _CONTAINERS):
            continue
        if type(module).__name__ in REMOVED_MODULE_NAMES:
            continue  # identity at inference; preprocess_for_quantize takes it out
        if isinstance(module, SUPPORTED_MODULES):
            if isinstance(module, nn.Conv2d) and isinstance(module.padding, str):
                raise UnsupportedModuleError(f"module {path!r} (Conv2d) uses padding={module.padding!r}; use integer padding")
            continue
        if any(True for _ in module.children()):
            continue  # a user block (e.g. BasicBlock): its leaves are checked
        names = ", ".join(sorted(t.__name__ for t in SUPPORTED_MODULES))
        raise UnsupportedModuleError(f"module {path!r} of type {type(module).__name__} is not supported; supported layers: {names}")


def quantize(model: nn.Module, policy: QuantPolicy | None = None) -> QuantizedModel:
    """Turn a float model into a :class:`QuantizedModel` with run-time bit knobs.

    The float model is not modified. Call :func:`~brevitas_amed.quant.calibrate` before
    training or evaluating.

    Args:
        model: A CNN of conv/linear/BN/pooling layers with ReLU, ReLU6, SiLU, Hardswish, Sigmoid
            or Hardsigmoid activations, residual adds, concatenations, squeeze-and-excitation
            products, chunk/split and channel shuffles (every torchvision classification CNN).
        policy: Allowed bits and first/last-layer treatment (default :class:`QuantPolicy`).

    Returns:
        The quantized model, all searchable knobs at ``policy.init_bits``.

    Raises:
        UnsupportedModuleError: A module has no quantized counterpart; names its path and type.
        ValueError: The model has no compute layer or cannot be traced.
    """
    policy = policy or QuantPolicy()
    check_supported(model)
    float_layers = [n for n, m in model.named_modules() if isinstance(m, COMPUTE_LAYERS)]
    if not float_layers:
        raise ValueError("model has no Conv2d or Linear layer to quantize")
    try:
        graph = preprocess_for_quantize(copy.deepcopy(model), merge_bn=False, relu6_to_relu=False)
    except Exception as exc:  # torch.fx tracing errors are long; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot trace the model for quantization ({first}); avoid data-dependent control flow in forward") from exc
    methods_to_functions(graph)
    qgraph = brevitas_quantize(graph, QUANT_IDENTITY_MAP, compute_layer_map(policy.per_channel_weights), QUANT_ACT_MAP)
    found = find_knobs(qgraph, policy.weight_bits, policy.act_bits)
    missing = set(float_layers) - set(found.layers)
    if missing:
        raise ValueError(f"layers {sorted(missing)} were not reached by tracing; they are not used in forward()?")
    qmodel = QuantizedModel(qgraph, policy, found.knobs, found.layers, found.layer_knobs)
    apply_policy(qmodel, found.output_knob)
    return qmodel


def methods_to_functions(graph: fx.GraphModule) -> None:
    """Rewrite ``x.chunk(...)``/``x.split(...)`` calls as ``torch.chunk(x, ...)`` in place.

    Brevitas' ``QuantTensor`` has no ``chunk`` method (ShuffleNetV2 fails with
    ``'IntQuantTensor' object has no attribute 'chunk'``); as a torch function the call runs on
    the dequantized value and Brevitas' graph quantizer requantizes each part before its use.
    """
    changed = False
    for node in graph.graph.nodes:
        if node.op == "call_method" and node.target in _METHODS_AS_FUNCTIONS:
            node.op, node.target = "call_function", _METHODS_AS_FUNCTIONS[node.target]
            changed = True
    if changed:
        graph.recompile()


def apply_policy(qmodel: QuantizedModel, output_knob: str | None) -> None:
    """Pin first/last layers per policy; pin requantizers that feed no compute layer.

    A quantizer that feeds no conv or linear layer (the sum of a residual add before its ReLU,
    the last ReLU before global pooling) costs nothing in the hardware models, so lowering it
    could only lose accuracy: it stays at the highest activation width. The network's output
    quantizer follows the last-layer policy.

    Args:
        qmodel: A freshly converted model.
        output_knob: The knob of the network's output quantizer, if any.
    """
    policy = qmodel.policy
    first, last = qmodel.layers[0], qmodel.layers[-1]
    pinned: dict[str, LayerPolicy] = {}
    for knob in qmodel.knobs.values():
        if knob.kind == "act" and not knob.layers:
            pinned[knob.name] = max(policy.act_bits)
    if output_knob is not None:
        pinned[output_knob] = policy.last_layer if policy.last_layer != "search" else max(policy.act_bits)
    for layer, setting in ((first, policy.first_layer), (last, policy.last_layer)):
        w, a = qmodel.layer_knobs[layer]
        pinned[w] = setting
        if a is not None and set(qmodel.knobs[a].layers) <= {first, last}:
            pinned[a] = setting  # do not pin a group other layers also read
    for name, knob in qmodel.knobs.items():
        setting = pinned.get(name, "search")
        if setting == "search":
            knob.fixed = None
            knob.set(policy.init_bits if policy.init_bits in knob.choices else max(knob.choices))
        elif setting == "float":
            knob.is_float = True
            for path in knob.modules:
                disable_quantization(qmodel.model.get_submodule(path))
            for layer in knob.layers if knob.kind == "act" else []:
                disable_quantization(qmodel.model.get_submodule(layer), bias_only=True)
        else:
            knob.fixed = int(setting)
            knob.set(int(setting))
