"""brevitas-amed: automatic mixed-precision quantization for edge devices on Brevitas.

The public names are loaded lazily so that ``from brevitas_amed import AMEDSampler`` imports
neither torch nor brevitas (the sampler works on any Optuna study).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # quantization (torch + brevitas)
    "quantize": "brevitas_amed.quantize",
    "QuantizedModel": "brevitas_amed.quantize",
    "QuantPolicy": "brevitas_amed.quantize",
    "build_workload": "brevitas_amed.workload",
    # search (optuna only)
    "AMEDSampler": "brevitas_amed.sampler",
    "QualityScore": "brevitas_amed.quality",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'brevitas_amed' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
