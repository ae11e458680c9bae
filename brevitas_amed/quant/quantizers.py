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
from brevitas.nn.quant_layer import QuantNonLinearActLayer as QuantNLAL
from brevitas.inject.enum import BitWidthImplType, ScalingImplType
from brevitas.quant import Int32Bias, Uint8ActPerTensorFloatMaxInit
from brevitas.quant.scaled_int import (Int8ActPerTensorFloat, Int8WeightPerChannelFloat,
                                       Int8WeightPerTensorFloat, Uint8ActPerTensorFloat)

SUPPORTED_MODULES: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d,
    nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Flatten, nn.Identity,
    nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid,
)
# Modules Brevitas' ``preprocess_for_quantize`` removes (identity at inference), by class name so
# that torchvision stays an optional import here.
REMOVED_MODULE_NAMES = frozenset({"StochasticDepth"})
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

class QuantSiLU(QuantNLAL):
    """SiLU as an integer accelerator runs it: a lookup table from a signed integer input.

    Brevitas has no SiLU layer; this is its ``QuantHardSwish`` pattern with SiLU. Defaults for
    every argument let Brevitas' residual alignment rebuild it from ``act_quant`` alone.
    """

    def __init__(self, act_quant=SignedActQuant, input_quant=SignedActQuant, return_quant_tensor=False, **kwargs):
        QuantNLAL.__init__(self, act_impl=nn.SiLU, passthrough_act=False, input_quant=input_quant,
                           act_quant=act_quant, return_quant_tensor=return_quant_tensor, **kwargs)


class QuantHardSwishLut(qnn.QuantHardSwish):
    """Brevitas' ``QuantHardSwish`` with a signed integer input and output (its minimum is -0.375)."""

    def __init__(self, act_quant=SignedActQuant, input_quant=SignedActQuant, return_quant_tensor=False, **kwargs):
        super().__init__(act_quant=act_quant, input_quant=input_quant, return_quant_tensor=return_quant_tensor, **kwargs)


class QuantHardSigmoid(QuantNLAL):
    """Hardsigmoid on the accumulator with an unsigned output, like Brevitas' ``QuantSigmoid``."""

    def __init__(self, act_quant=UnsignedActQuant, input_quant=None, return_quant_tensor=False, **kwargs):
        QuantNLAL.__init__(self, act_impl=nn.Hardsigmoid, passthrough_act=False, input_quant=input_quant,
                           act_quant=act_quant, return_quant_tensor=return_quant_tensor, **kwargs)


# Monotonic activations (ReLU, Sigmoid, Hardsigmoid) read the accumulator and quantize their
# output, as Brevitas' own QUANT_ACT_MAP does (FINN folds them into thresholds). SiLU and
# Hardswish are not monotonic, so an integer accelerator runs them as a lookup table from an
# integer input: they get an input quantizer too (a knob of its own that feeds no compute layer,
# so the policy keeps it at the highest width) and a signed output (their minimum is below 0).
QUANT_ACT_MAP = {
    nn.ReLU: (qnn.QuantReLU, dict(act_quant=UnsignedActQuant, return_quant_tensor=True)),
    nn.ReLU6: (qnn.QuantReLU, dict(act_quant=Relu6ActQuant, max_val=6.0, return_quant_tensor=True)),
    nn.Sigmoid: (qnn.QuantSigmoid, dict(act_quant=UnsignedActQuant, return_quant_tensor=True)),
    nn.Hardsigmoid: (QuantHardSigmoid, dict(return_quant_tensor=True)),
    nn.Hardswish: (QuantHardSwishLut, dict(return_quant_tensor=True)),
    nn.SiLU: (QuantSiLU, dict(return_quant_tensor=True)),
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
