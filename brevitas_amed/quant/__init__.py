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

from brevitas_amed.quant.calibrate import calibrate, input_batches
from brevitas_amed.quant.convert import UnsupportedModuleError, quantize
from brevitas_amed.quant.costs import FLOAT_AS_BITS, LatencyTable, layer_bits, side_options
from brevitas_amed.quant.export import export_qonnx
from brevitas_amed.quant.knobs import Knob
from brevitas_amed.quant.model import QuantizedModel
from brevitas_amed.quant.policy import MAX_BITS, MIN_BITS, QuantPolicy
from brevitas_amed.quant.status import quantize_only
from brevitas_amed.quant.verify import ExportCheck, verify_qonnx
from brevitas_amed.quant.workload import build_workload

__all__ = ["ExportCheck", "FLOAT_AS_BITS", "Knob", "LatencyTable", "MAX_BITS", "MIN_BITS", "QuantPolicy",
           "QuantizedModel", "UnsupportedModuleError", "build_workload", "calibrate", "export_qonnx",
           "input_batches", "layer_bits", "quantize", "quantize_only", "side_options", "verify_qonnx"]
