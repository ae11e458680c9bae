"""Quantizers on and off, through Brevitas' quantization status manager.

A quantizer left off passes its input through in float; a float tensor cannot travel as a
``QuantTensor``, so Brevitas' manager also stops the affected modules returning one.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

from brevitas.graph.calibrate import QuantizationStatusManager, quantization_status_manager
from brevitas.proxy.quant_proxy import QuantProxyFromInjector


def disable_quantization(module: nn.Module, bias_only: bool = False) -> None:
    """Leave the quantizers of ``module`` (and its submodules) in float for good.

    Args:
        module: A quantized layer or activation.
        bias_only: Only the bias quantizers (an integer bias needs a quantized input).
    """
    manager = quantization_status_manager(module, disable_act_quant=not bias_only,
                                          disable_weight_quant=not bias_only, disable_bias_quant=True)
    manager.disable_module_quantization(module)


@contextlib.contextmanager
def quantize_only(qmodel, knob: str) -> Iterator[None]:
    """Disable every quantizer of ``qmodel`` except those driven by ``knob``; restore on exit.

    Biases and fixed or float knobs are disabled too: the model computes in float but for the
    quantizers of this one knob, at its current bits.

    Args:
        qmodel: A :class:`~brevitas_amed.quant.QuantizedModel`.
        knob: Name of the knob whose quantizers stay active.

    Raises:
        ValueError: If ``knob`` is not a knob of ``qmodel``.
    """
    if knob not in qmodel.knobs:
        raise ValueError(f"unknown bit knob {knob!r}; known knobs: {', '.join(qmodel.knobs)}")
    impls = {id(impl) for impl in qmodel.knobs[knob].impls()}
    own = [proxy for proxy in qmodel.model.modules() if isinstance(proxy, QuantProxyFromInjector)
           and any(id(sub) in impls for sub in proxy.modules())]
    with quantization_status_manager(qmodel.model, disable_act_quant=True, disable_weight_quant=True,
                                     disable_bias_quant=True):
        for proxy in own:
            QuantizationStatusManager.enable_act_quantization(proxy, is_training=proxy.training)
            QuantizationStatusManager.enable_weight_quantization(proxy, is_training=proxy.training)
        yield
