"""The ``finn`` latency backend: a layer's cost is FINN's own estimate on an FPGA dataflow target.

FINN builds one hardware unit per layer and folds each (PE x SIMD) to keep up with a target
throughput; what a lower bit width buys there is area, not time. So this backend reports, per
layer and bit pair, the resource FINN estimates for the layer folded for the profile's
``target_fps`` (``LUT`` by default; ``DSP`` or ``BRAM_18K`` by the profile's ``cost``), and the
search minimises the sum: the LUTs of the whole accelerator at that throughput.

What each :class:`~hw_backends.LayerLatency` field holds here:

* ``cycles``: the cost, in the profile's ``cost`` unit (LUTs by default), **not** clock cycles;
* ``utilization``: FINN's expected cycles per frame of the layer at its folding over the target
  (``clock_hz / target_fps``): at most 1 when the layer keeps up, above 1 when FINN could not fold
  it fast enough (SetFolding's weight-width limit, or a fully unfolded layer);
* ``stall_cycles`` and ``mapping_efficiency``: 0.

:meth:`FinnBackend.latency` reports ``seconds`` as the frame interval of the pipeline (the
slowest layer's expected cycles over ``clock_hz``, so ``1 / seconds`` is the throughput); any
other ``cycles / clock_hz`` of this backend (e.g. a job summary's ``latency_seconds``) is
meaningless. The estimates come from FINN itself, in its own environment (``env.py``), through
``layer_estimates.py``: every missing layer of one request in one subprocess. Results are cached
per (layer shape, bits) under FINN's version and the profile's content hash.

Layer mapping, as FINN's ``step_convert_to_hw`` does it: a dense convolution is an MVAU with
``MW = Cin*kh*kw``, ``MH = Cout``, ``out_h*out_w`` input vectors; a linear layer an MVAU on one
vector; a depthwise convolution (``groups == Cin == Cout``) a VVAU; any other grouped
convolution ``groups`` MVAUs of one group each. Weights are FINN's ``INT{w}`` (``BIPOLAR`` for
1 bit), inputs ``UINT{a}`` (``BINARY`` for 1 bit). The thresholds FINN fuses into each unit
cost no LUTs in FINN's model unless they are put in distributed RAM, so they are left out.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

import hw_backends
from hw_backends.base import Bits
from hw_backends.cache import LatencyCache
from hw_backends.errors import SimulationError, SimulationTimeout
from hw_backends.precision import SimJob

from brevitas_amed.finn.check import expected_weight_dtype
from brevitas_amed.finn.env import FinnEnvError, finn_python, venv_path
from brevitas_amed.finn.fpga_profile import DEFAULT_PROFILE, FpgaProfile, load_fpga_profile, shipped_fpga_profiles

RUNNER = Path(__file__).resolve().parent / "layer_estimates.py"
_STDERR_TAIL = 2000


def input_dtype(bits: int) -> str:
    """FINN's datatype for unsigned ``bits``-bit layer inputs (post-ReLU activations)."""
    return "BINARY" if bits == 1 else f"UINT{bits}"


@dataclasses.dataclass(frozen=True)
class FinnLayer:
    """One FINN compute unit at one weight and input bit width (the spec the backend costs).

    Attributes:
        op: ``"MVAU"`` (dense convolution or linear layer) or ``"VVAU"`` (depthwise convolution).
        mw / mh: MVAU matrix width (``Cin*kh*kw``) and height (``Cout``); 0 for a VVAU.
        ofm: Output feature map ``(out_h, out_w)``: the MVAU's input vectors, the VVAU's ``Dim``.
        channels / kernel / ifm / stride: VVAU channels, kernel, padded input map and stride.
        weight_bits / act_bits: The layer's weight and input bit widths.
    """

    op: str
    mw: int
    mh: int
    ofm: tuple[int, int]
    weight_bits: int
    act_bits: int
    channels: int = 0
    kernel: tuple[int, int] = (1, 1)
    ifm: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)

    @classmethod
    def of(cls, layer: hw_backends.Layer, weight_bits: int, act_bits: int) -> SimJob:
        """The unit FINN makes of ``layer`` and how many of them (``groups`` for grouped convolutions)."""
        ofm = (layer.out_h, layer.out_w)
        if layer.groups > 1 and layer.groups == layer.in_channels == layer.out_channels:
            spec = cls("VVAU", 0, 0, ofm, weight_bits, act_bits, channels=layer.in_channels,
                       kernel=(layer.kernel_h, layer.kernel_w),
                       ifm=(layer.in_h + 2 * layer.pad_h, layer.in_w + 2 * layer.pad_w),
                       stride=(layer.stride_h, layer.stride_w))
            return SimJob(spec=spec, repeats=1)
        mw = layer.in_channels // layer.groups * layer.kernel_h * layer.kernel_w
        spec = cls("MVAU", mw, layer.out_channels // layer.groups, ofm, weight_bits, act_bits)
        return SimJob(spec=spec, repeats=layer.groups)

    def key(self) -> tuple:
        return dataclasses.astuple(self)

    def request(self, profile: FpgaProfile) -> dict[str, Any]:
        """This unit as ``layer_estimates.py`` reads it."""
        common = {"op": self.op, "weight_dtype": expected_weight_dtype(self.weight_bits),
                  "input_dtype": input_dtype(self.act_bits), "impl_style": profile.impl_style}
        if self.op == "MVAU":
            return {**common, "mw": self.mw, "mh": self.mh, "vectors": list(self.ofm)}
        return {**common, "channels": self.channels, "kernel": list(self.kernel), "ifm": list(self.ifm),
                "ofm": list(self.ofm), "stride": list(self.stride)}


def installed_finn_version(venv: Path) -> str | None:
    """The finn-plus version installed in a FINN environment, read from its metadata (no import)."""
    sites = [*venv.glob("lib/python*/site-packages"), venv / "Lib" / "site-packages"]
    for dist in metadata.distributions(name="finn-plus", path=[str(s) for s in sites if s.is_dir()]):
        return dist.version
    return None


class FinnBackend(hw_backends.Backend):
    """Cost of a layer = FINN's resource estimate for it folded to the profile's target throughput.

    Args:
        profile: A shipped FINN profile name (``zynq7020``), a profile YAML path, a mapping of its
            fields, or an :class:`FpgaProfile`.
        cache: A database URL, a :class:`LatencyCache`, ``None`` for the default persistent cache,
            or ``False`` for memory only.
        finn_venv: FINN's environment (default: ``BREVITAS_AMED_FINN_VENV``, else ``.finn-venv``).

    Raises:
        ProfileError: If the profile cannot be loaded.
    """

    name = "finn"
    version = "1"

    def __init__(self, profile: Any = DEFAULT_PROFILE, cache: "str | LatencyCache | bool | None" = None,
                 finn_venv: "str | os.PathLike | None" = None) -> None:
        super().__init__(profile, cache)
        self.venv = venv_path(finn_venv)

    @staticmethod
    def read_profile(profile: Any) -> FpgaProfile:
        """A FINN profile (see :func:`load_fpga_profile`), not a systolic-array one."""
        return load_fpga_profile(profile)

    @staticmethod
    def available_profiles() -> list[str]:
        """The shipped FINN profiles."""
        return shipped_fpga_profiles()

    @functools.cached_property
    def finn_version(self) -> str:
        """finn-plus's version in the FINN environment (part of every cache key).

        Raises:
            SimulationError: The environment is missing or cannot import FINN.
        """
        version = installed_finn_version(self.venv)
        if version is None:
            _ = self.python  # raises the environment's own error
            version = "unknown"
        return version

    @functools.cached_property
    def python(self) -> Path:
        """The FINN environment's python.

        Raises:
            SimulationError: The environment is missing or cannot import FINN (the message says
                how to build it: ``brevitas-amed finn --setup``).
        """
        try:
            return finn_python(self.venv)
        except FinnEnvError as exc:
            raise SimulationError(f"the finn backend needs FINN's environment: {exc}",
                                  profile=self.profile.name) from exc

    @functools.cached_property
    def cache_namespace(self) -> tuple[str, ...]:
        return (self.name, self.version, self.profile.content_hash, f"finn-plus {self.finn_version}")

    def plan(self, layer: hw_backends.Layer, weight_bits: int, act_bits: int) -> SimJob:
        """The FINN unit of ``layer`` at these bits (see :meth:`FinnLayer.of`)."""
        return FinnLayer.of(layer, weight_bits, act_bits)

    def latency(self, workload: hw_backends.Workload, bits: Bits) -> hw_backends.LatencyReport:
        """Cost of ``workload`` at ``bits``: ``cycles`` is the summed cost (LUTs by default) and
        ``seconds`` the pipeline's frame interval at FINN's folding (see the module docstring)."""
        report = super().latency(workload, bits)
        slowest = max((cost.utilization for cost in report.per_layer.values()), default=0.0)
        interval = slowest * self.profile.target_cycles / self.profile.clock_hz
        return dataclasses.replace(report, seconds=interval)

    def simulate_specs(self, specs: Mapping[FinnLayer, str],
                       progress: bool) -> Iterator[tuple[FinnLayer, hw_backends.LayerLatency]]:
        """Every missing unit in one FINN subprocess; results in request order."""
        ordered = list(specs)
        results = self.run_finn([spec.request(self.profile) for spec in ordered])
        target = self.profile.target_cycles
        for spec, result in zip(ordered, results):
            if "error" in result:
                raise SimulationError(f"FINN could not estimate layer {specs[spec]} ({spec.op}) on FINN profile "
                                      f"{self.profile.name!r}: {result['error']}",
                                      layer=specs[spec], profile=self.profile.name)
            yield spec, hw_backends.LayerLatency(cycles=int(result[self.profile.cost]),
                                                 utilization=result["cycles"] / target)

    def run_finn(self, layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``layer_estimates.py`` in FINN's environment on these requests; its results in order.

        Raises:
            SimulationTimeout: FINN ran past the profile's ``timeout_s``.
            SimulationError: The environment is missing, or FINN failed or wrote no result.
        """
        where = f"FINN profile {self.profile.name!r}"
        request = {"part": self.profile.part, "target_cycles": self.profile.target_cycles,
                   "mvau_wwidth_max": self.profile.mvau_wwidth_max, "layers": layers}
        with tempfile.TemporaryDirectory(prefix="brevitas-amed-finn-") as tmp:
            req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
            req.write_text(json.dumps(request))
            try:
                done = subprocess.run([str(self.python), str(RUNNER), str(req), str(res)], capture_output=True,
                                      text=True, timeout=self.profile.timeout_s)
            except subprocess.TimeoutExpired:
                raise SimulationTimeout(f"FINN took longer than {self.profile.timeout_s:g} s for {len(layers)} "
                                        f"layers on {where}; raise timeout_s in the profile",
                                        profile=self.profile.name) from None
            if done.returncode != 0 or not res.is_file():
                tail = done.stderr.strip()[-_STDERR_TAIL:] or "(no stderr)"
                raise SimulationError(f"FINN's layer estimates exited with status {done.returncode} on {where}; "
                                      f"its stderr ends with:\n{tail}", profile=self.profile.name)
            results = json.loads(res.read_text())["results"]
        if len(results) != len(layers):
            raise SimulationError(f"FINN returned {len(results)} estimates for {len(layers)} layers on {where}",
                                  profile=self.profile.name)
        return results
