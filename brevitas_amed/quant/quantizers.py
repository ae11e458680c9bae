"""The quantizers and the declarative layer maps Brevitas' graph quantizer is configured with.

Every quantizer is a stock Brevitas one with two settings changed:

* a ``STATEFUL_CONST`` bit width: a buffer read on every forward, saved in ``state_dict``, and
  changed in place in microseconds (no rebuild);
* a ``PARAMETER_FROM_STATS`` scale: initialised from statistics (weights at first use, activations
  by :func:`~brevitas_amed.quant.calibrate`), then a trained parameter (the clipping threshold,
  so a bit-width change keeps the learned range).

The maps have the shape of Brevitas' own ``QUANT_IDENTITY_MAP``, ``COMPUTE_LAYER_MAP`` and
``QUANT_ACT_MAP`` (``brevitas.graph.quantize``): float module type -> (quantized type, kwargs).
"""

from __future__ import annotations

from torch import nn

import brevitas.nn as qnn
from brevitas.inject.enum import BitWidthImplType, ScalingImplType
from brevitas.quant import Int32Bias, Uint8ActPerTensorFloatMaxInit
from brevitas.quant.scaled_int import (Int8ActPerTensorFloat, Int8WeightPerChannelFloat,
                                       Int8WeightPerTensorFloat, Uint8ActPerTensorFloat)

SUPPORTED_MODULES: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d,
    nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Flatten, nn.Identity,
)
COMPUTE_LAYERS = (nn.Conv2d, nn.Linear)


class WeightQuantPerChannel(Int8WeightPerChannelFloat):
    bit_width_impl_type = BitWidthImplType.STATEFUL_CONST
    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS


class WeightQuantPerTensor(Int8WeightPerTensorFloat):
    bit_width_impl_type = BitWidthImplType.STATEFUL_CONST
    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS


class SignedActQuant(Int8ActPerTensorFloat):
    bit_width_impl_type = BitWidthImplType.STATEFUL_CONST


class UnsignedActQuant(Uint8ActPerTensorFloat):
    bit_width_impl_type = BitWidthImplType.STATEFUL_CONST


class Relu6ActQuant(Uint8ActPerTensorFloatMaxInit):
    bit_width_impl_type = BitWidthImplType.STATEFUL_CONST


QUANT_IDENTITY_MAP = {
    "signed": (qnn.QuantIdentity, dict(act_quant=SignedActQuant, return_quant_tensor=True)),
    "unsigned": (qnn.QuantIdentity, dict(act_quant=UnsignedActQuant, return_quant_tensor=True)),
}

QUANT_ACT_MAP = {
    nn.ReLU: (qnn.QuantReLU, dict(act_quant=UnsignedActQuant, return_quant_tensor=True)),
    nn.ReLU6: (qnn.QuantReLU, dict(act_quant=Relu6ActQuant, max_val=6.0, return_quant_tensor=True)),
}


def compute_layer_map(per_channel_weights: bool) -> dict:
    """Conv and linear layers with run-time weight bits and a 32-bit integer bias.

    Args:
        per_channel_weights: One weight scale per output channel, else one per layer.

    Returns:
        A Brevitas ``compute_layer_map``; average pooling stays float (``None``).
    """
    weight_quant = WeightQuantPerChannel if per_channel_weights else WeightQuantPerTensor
    layer_kwargs = dict(weight_quant=weight_quant, bias_quant=Int32Bias, return_quant_tensor=True)
    return {nn.Conv2d: (qnn.QuantConv2d, layer_kwargs), nn.Linear: (qnn.QuantLinear, layer_kwargs),
            nn.AvgPool2d: None}
