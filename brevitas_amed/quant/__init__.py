"""Float torch model -> Brevitas model whose per-layer bit widths ("knobs") change at run time.

* :mod:`~brevitas_amed.quant.policy`: :class:`QuantPolicy`, the allowed bit range.
* :mod:`~brevitas_amed.quant.quantizers`: the quantizers and Brevitas-style layer maps.
* :mod:`~brevitas_amed.quant.convert`: :func:`quantize` (Brevitas' graph quantizer + the policy).
* :mod:`~brevitas_amed.quant.knobs`: :class:`Knob` and the analysis that groups quantizers.
* :mod:`~brevitas_amed.quant.model`: :class:`QuantizedModel`, bits per layer or knob, model size.
* :mod:`~brevitas_amed.quant.status`: :func:`quantize_only`, quantizers on and off.
* :mod:`~brevitas_amed.quant.calibrate`: :func:`calibrate`, :func:`input_batches`.
* :mod:`~brevitas_amed.quant.workload`: :func:`build_workload`, torch model -> layer shapes.
* :mod:`~brevitas_amed.quant.costs`: :class:`LatencyTable`, latency of bit allocations.
* :mod:`~brevitas_amed.quant.export`: QONNX export.
* :mod:`~brevitas_amed.quant.verify`: :func:`verify_qonnx`, the export executed by qonnx against PyTorch.

Data flows ``quantize -> calibrate -> workload -> LatencyTable``; nothing here imports optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use (PEP 562), so that ``brevitas_amed.quant.policy`` (which the recipe schema
# needs) imports without brevitas: a job's helper workers start before the heavy imports.
_EXPORTS = {
    "calibrate": "calibrate", "input_batches": "calibrate",
    "UnsupportedModuleError": "convert", "quantize": "convert",
    "FLOAT_AS_BITS": "costs", "LatencyTable": "costs", "layer_bits": "costs", "side_options": "costs",
    "export_qonnx": "export",
    "Knob": "knobs",
    "QuantizedModel": "model",
    "MAX_BITS": "policy", "MIN_BITS": "policy", "QuantPolicy": "policy",
    "quantize_only": "status",
    "ExportCheck": "verify", "verify_qonnx": "verify",
    "build_workload": "workload",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'brevitas_amed.quant' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"brevitas_amed.quant.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__
