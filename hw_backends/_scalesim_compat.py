"""Runs one convolution through the real SCALE-Sim 3, in-process, without files.

Everything that works around SCALE-Sim lives here:

* numpy >= 2.3 raises ``TypeError`` at ``int(max(array))`` in ``memory/read_buffer.py`` and
  ``memory/double_buffered_scratchpad_mem.py``: builtin ``max`` over ``(n, 1)`` arrays returns a
  1-element array, which numpy no longer converts with ``int()``. We shadow ``max`` in those two
  modules' globals with a version that returns a numpy scalar (same value, any numpy version)
  instead of pinning numpy.
* SCALE-Sim prints progress and errors, and its top level calls ``exit()``: we capture stdout and
  stderr and turn ``SystemExit`` and every exception into :class:`SimulationError` carrying the
  captured tail.
* Its topology parser has no padding field: :mod:`hw_backends.precision` gives it the padded,
  cropped input. Bank counts are set to 1 so any bandwidth divides by them.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import scalesim.memory.double_buffered_scratchpad_mem as _scratchpad_module
import scalesim.memory.read_buffer as _read_buffer_module
from scalesim.layout_utils import layouts
from scalesim.scale_config import scale_config
from scalesim.single_layer_sim import single_layer_sim
from scalesim.topology_utils import topologies

from hw_backends.errors import SimulationError
from hw_backends.precision import SimSpec
from hw_backends.profile import Profile
from hw_backends.report import LayerLatency


def _scalar_max(*args):
    """Builtin ``max`` semantics, but a numpy scalar when the items are arrays."""
    items = args[0] if len(args) == 1 else args
    return np.max(np.concatenate([np.ravel(np.asarray(item)) for item in items]))


_read_buffer_module.max = _scalar_max
_scratchpad_module.max = _scalar_max


def scale_config_for(spec: SimSpec, profile: Profile) -> scale_config:
    """SCALE-Sim's configuration object for ``profile`` with ``spec``'s (packed) memory."""
    config = scale_config()
    config.run_name = f"hw_backends_{profile.name}"
    config.array_rows, config.array_cols = profile.array.rows, profile.array.cols
    config.df = profile.dataflow
    # SCALE-Sim multiplies KB by 1024 and floors: elements / 1024 is exact in binary floating point.
    config.ifmap_sz_kb = spec.ifmap_sram / 1024
    config.filter_sz_kb = spec.filter_sram / 1024
    config.ofmap_sz_kb = spec.ofmap_sram / 1024
    config.using_ifmap_custom_layout = False
    config.using_filter_custom_layout = False
    config.use_user_bandwidth = profile.dram.mode == "user"
    config.bandwidths = [spec.ofmap_bw]
    config.ifmap_sram_bank_bandwidth, config.filter_sram_bank_bandwidth = spec.ifmap_bw, spec.filter_bw
    config.ifmap_sram_bank_num = config.filter_sram_bank_num = 1
    config.force_valid()
    return config


def topology_for(spec: SimSpec) -> topologies:
    """SCALE-Sim's topology object holding the one convolution (sparsity 1:1, i.e. dense)."""
    topology = topologies()
    topology.load_layer_params_from_list("layer", [
        "layer", spec.ifmap_h, spec.ifmap_w, spec.filter_h, spec.filter_w, spec.channels,
        spec.num_filters, spec.stride_h, spec.stride_w, 1, 1])
    topology.topo_calc_hyperparams()
    return topology


def simulate(spec: SimSpec, profile: Profile, label: str) -> LayerLatency:
    """One SCALE-Sim run of ``spec`` on ``profile``.

    Args:
        spec: The convolution.
        profile: The hardware profile.
        label: Layer name and bits, for error messages.

    Returns:
        SCALE-Sim's compute report as a :class:`LayerLatency`: ``cycles`` is its Total Cycles
        (the second item of the compute report, stalls included).

    Raises:
        SimulationError: If SCALE-Sim raises, asserts or exits; the message ends with the tail
            of what it printed.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            sim = single_layer_sim()
            sim.set_params(layer_id=0, config_obj=scale_config_for(spec, profile),
                           topology_obj=topology_for(spec), layout_obj=layouts(), verbose=False)
            sim.run()
            _overall, total, stalls, util, mapping, _compute_util = sim.get_compute_report_items()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - SCALE-Sim asserts and exits
        tail = " ".join(captured.getvalue().split())[-300:]
        raise SimulationError(
            f"SCALE-Sim could not simulate layer {label} on profile {profile.name!r}: "
            f"{type(exc).__name__}: {exc}" + (f" (SCALE-Sim said: {tail})" if tail else ""),
            layer=label, profile=profile.name) from None
    return LayerLatency(cycles=int(total), stall_cycles=int(stalls), utilization=float(util) / 100,
                        mapping_efficiency=float(mapping) / 100)
