"""hw_backends imports no torch, brevitas or brevitas_amed."""

from __future__ import annotations

import subprocess
import sys


def test_hw_backends_imports_no_torch():
    code = ("import sys, hw_backends; hw_backends.get('scalesim', profile='eyeriss', cache=False); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'brevitas', 'brevitas_amed'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
