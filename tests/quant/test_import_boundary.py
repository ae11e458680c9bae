"""The quant package imports no optuna: quantization works without the search."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("statement", [
    "import brevitas_amed.quant",
    "from brevitas_amed.quant import LatencyTable, QuantizedModel, calibrate, quantize, quantize_only",
])
def test_quant_imports_no_optuna(statement: str) -> None:
    code = f"import sys; {statement}\nprint('optuna' in {{m.split('.')[0] for m in sys.modules}})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"
