"""Build a torch-free :class:`hw_backends.Workload` from a torch model."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from hw_backends.workload import Layer, Workload


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def build_workload(
    model: nn.Module,
    input_shape: Sequence[int],
    name: str | None = None,
    knobs: Mapping[str, tuple[str | None, str | None]] | None = None,
) -> Workload:
    """Trace the conv and linear layers of ``model`` in execution order.

    Args:
        model: A float (or quantized) torch model; it is run once on zeros in eval mode.
        input_shape: Shape of one input without the batch dimension, e.g. ``(3, 224, 224)``.
        name: Workload name (defaults to the model's class name).
        knobs: Optional ``{layer_name: (weight_knob, act_knob)}`` tying layers to bit knobs.

    Returns:
        A :class:`Workload` whose layers carry the shapes a hardware backend needs.

    Raises:
        ValueError: If the model has no conv or linear layer, or a conv is not 2-D.
    """
    records: list[Layer] = []
    handles = []
    knobs = dict(knobs or {})

    def hook_for(layer_name: str):
        def hook(module: nn.Module, inputs, _output) -> None:
            x = inputs[0]
            x = getattr(x, "value", x)  # brevitas QuantTensor
            wk, ak = knobs.get(layer_name, (None, None))
            if isinstance(module, nn.Conv2d):
                if isinstance(module.padding, str):
                    raise ValueError(f"layer {layer_name!r}: string padding {module.padding!r} is not supported; use integer padding")
                kh, kw = _pair(module.kernel_size)
                sh, sw = _pair(module.stride)
                ph, pw = _pair(module.padding)
                dh, dw = _pair(module.dilation)
                if (dh, dw) != (1, 1):
                    raise ValueError(f"layer {layer_name!r}: dilated convolutions are not supported by the hardware models")
                records.append(Layer(
                    name=layer_name, kind="conv", in_channels=module.in_channels,
                    out_channels=module.out_channels, in_h=int(x.shape[-2]), in_w=int(x.shape[-1]),
                    kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw,
                    groups=module.groups, weight_knob=wk, act_knob=ak))
            else:
                records.append(Layer(
                    name=layer_name, kind="linear", in_channels=module.in_features,
                    out_channels=module.out_features, weight_knob=wk, act_knob=ak))
        return hook

    for layer_name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv3d)):
            raise ValueError(f"layer {layer_name!r}: {type(module).__name__} is not supported; only 2-D convolutions")
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(hook_for(layer_name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not records:
        raise ValueError("model has no Conv2d or Linear layer; nothing for a hardware model to cost")
    return Workload(name=name or type(model).__name__, layers=tuple(records), input_shape=tuple(input_shape))
