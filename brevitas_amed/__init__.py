"""brevitas-amed: automatic mixed-precision quantization for edge devices on Brevitas.

The public names are loaded lazily so that ``from brevitas_amed import AMEDSampler`` imports
neither torch nor brevitas (the sampler works on any Optuna study).

* quantization (torch + brevitas): :func:`quantize`, :func:`calibrate`, :class:`QuantPolicy`,
  :class:`QuantizedModel`, :func:`build_workload`, :func:`export_qonnx`, :func:`verify_qonnx`
* search (optuna only): :class:`AMEDSampler`, :class:`GeometricAnnealing`,
  :class:`QualityScore`, :class:`ModelSizeLimit`
* the whole job: :func:`load_recipe`, :func:`run_recipe`, :func:`run_compare`
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "quantize": ("brevitas_amed.quant", "quantize"),
    "calibrate": ("brevitas_amed.quant", "calibrate"),
    "QuantPolicy": ("brevitas_amed.quant", "QuantPolicy"),
    "QuantizedModel": ("brevitas_amed.quant", "QuantizedModel"),
    "build_workload": ("brevitas_amed.quant", "build_workload"),
    "export_qonnx": ("brevitas_amed.quant", "export_qonnx"),
    "verify_qonnx": ("brevitas_amed.quant", "verify_qonnx"),
    "AMEDSampler": ("brevitas_amed.search", "AMEDSampler"),
    "GeometricAnnealing": ("brevitas_amed.search", "GeometricAnnealing"),
    "QualityScore": ("brevitas_amed.search", "QualityScore"),
    "ModelSizeLimit": ("brevitas_amed.search", "ModelSizeLimit"),
    "load_recipe": ("brevitas_amed.job.recipe", "load_recipe"),
    "run_recipe": ("brevitas_amed.job.run", "run"),
    "run_compare": ("brevitas_amed.job.compare", "run_compare"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'brevitas_amed' has no attribute {name!r}")
    module, attr = target
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__
