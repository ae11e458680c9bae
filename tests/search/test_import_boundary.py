"""The search package imports no torch or brevitas: the sampler works on any Optuna study."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "statement",
    [
        "import brevitas_amed.search",
        "from brevitas_amed.search import AMEDSampler",
        "from brevitas_amed.search import GeometricAnnealing, ModelSizeLimit, QualityScore",
    ],
)
def test_search_imports_neither_torch_nor_brevitas(statement: str) -> None:
    code = (
        f"import sys; {statement}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'brevitas'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"
