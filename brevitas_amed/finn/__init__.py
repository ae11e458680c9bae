"""FINN's dataflow flow on the job's QONNX exports, in FINN's own environment.

* :func:`run_finn` (``flow.py``): every exported model of a finished job through FINN up to its
  estimate reports; writes ``finn.json`` and ``finn.md`` and checks FINN's weight datatypes
  against the chosen bits (``check.py``).
* ``env.py``: finds or builds FINN's virtual environment (FINN pins its own brevitas and onnx).
* ``finn_runner.py``, ``finn_steps.py``, ``activation_steps.py`` (Hardswish and SiLU as table
  lookups, Hardsigmoid and Sigmoid folded into thresholds), ``qonnx_speed.py`` and ``layer_estimates.py`` run
  inside that environment only (they import ``finn`` or ``qonnx``); the main package never
  imports them. ``backend.py`` is the ``finn`` latency backend (it runs ``layer_estimates.py``).

Importing this package imports neither torch nor FINN.
"""

from __future__ import annotations

from brevitas_amed.finn.check import weight_bit_mismatches
from brevitas_amed.finn.env import FinnEnvError, finn_python, setup_venv
from brevitas_amed.finn.flow import FinnSettings, run_finn

__all__ = ["FinnEnvError", "FinnSettings", "finn_python", "run_finn", "setup_venv", "weight_bit_mismatches"]
