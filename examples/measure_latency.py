"""A measurement program for the ``command`` hardware backend: a bit-serial roofline model.

Replace the body of ``cycles`` with a real measurement (run the layer on your board, call a
profiler) and keep the protocol:

* stdin: ``{"layer": {...shape...}, "weight_bits": w, "act_bits": a,
  "profile": {"name": ..., "clock_hz": ..., "params": {...}}}``
* stdout: last line ``{"cycles": <non-negative number>}``; exit status 0.

The model here: a bit-serial MAC array doing ``macs_per_cycle`` 1-bit x 1-bit products per
cycle (a w x a product takes ``w * a`` of them), fed by a memory moving ``bytes_per_cycle``
bytes of packed weights and activations, plus a fixed ``overhead_cycles`` per layer; a layer
takes the longer of compute and memory. Try it::

    echo '{"layer": {"name": "c", "kind": "conv", "in_channels": 64, "out_channels": 64,
      "in_h": 8, "in_w": 8, "kernel_h": 3, "kernel_w": 3, "stride_h": 1, "stride_w": 1,
      "pad_h": 1, "pad_w": 1, "groups": 1}, "weight_bits": 4, "act_bits": 8,
      "profile": {"name": "demo", "clock_hz": 1e9, "params": {}}}' | python examples/measure_latency.py
"""

from __future__ import annotations

import json
import math
import sys

DEFAULTS = {"macs_per_cycle": 4096, "bytes_per_cycle": 16, "overhead_cycles": 100}


def cycles(layer: dict, weight_bits: int, act_bits: int, params: dict) -> int:
    """Roofline cycles of one conv or linear layer at the given bit widths."""
    p = {**DEFAULTS, **params}
    out_h = (layer["in_h"] + 2 * layer["pad_h"] - layer["kernel_h"]) // layer["stride_h"] + 1
    out_w = (layer["in_w"] + 2 * layer["pad_w"] - layer["kernel_w"]) // layer["stride_w"] + 1
    weights = layer["out_channels"] * layer["in_channels"] // layer["groups"] * layer["kernel_h"] * layer["kernel_w"]
    macs = out_h * out_w * weights
    compute = macs * weight_bits * act_bits / p["macs_per_cycle"]
    traffic = (weights * weight_bits + layer["in_channels"] * layer["in_h"] * layer["in_w"] * act_bits
               + layer["out_channels"] * out_h * out_w * 8) / 8
    return p["overhead_cycles"] + math.ceil(max(compute, traffic / p["bytes_per_cycle"]))


def main() -> None:
    request = json.load(sys.stdin)
    result = cycles(request["layer"], request["weight_bits"], request["act_bits"], request["profile"]["params"])
    print(json.dumps({"cycles": result}))


if __name__ == "__main__":
    main()
