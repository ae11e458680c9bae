"""The ``command`` backend: latency measured by a program you provide (hardware in the loop).

OHQ measures each operator on the device itself; this backend does the same through any
program: a script that runs the layer on a board, calls a vendor profiler, or evaluates a model.
The program is named in a *command profile* (see ``examples/command_profile.yaml``)::

    name: my-board                       # identifies the device: part of the cache key
    clock_hz: 1.0e+9                     # report.seconds = cycles / clock_hz
    command: ["{python}", "{here}/measure_latency.py"]
    timeout_s: 30                        # per layer
    params: {macs_per_cycle: 256}        # passed to the program unchanged

In ``command``, ``{python}`` becomes the running Python interpreter and ``{here}`` the folder of
the profile file. Protocol, once per distinct (layer shape, weight bits, activation bits):

* stdin: one JSON object ``{"layer": {...}, "weight_bits": w, "act_bits": a, "profile":
  {"name": ..., "clock_hz": ..., "params": {...}}}``; ``layer`` holds the shape fields of
  :class:`hw_backends.Layer` (``kind``, ``in_channels``, ``out_channels``, ``in_h``, ``in_w``,
  ``kernel_h``, ``kernel_w``, ``stride_h``, ``stride_w``, ``pad_h``, ``pad_w``, ``groups``) and its
  ``name``.
* stdout: the last non-empty line is a JSON object with ``"cycles"``: a non-negative number
  (rounded to an int); earlier lines are ignored (logs). Exit status 0.

Programs run one at a time (measurements on one device must not overlap). Each successful
measurement is kept in memory and in the persistent :class:`~hw_backends.cache.LatencyCache`
(keyed by the profile's name, command and params, and the layer shape and bits); a failure is
never cached, so the next call runs the program again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

import pydantic

from hw_backends.base import Backend
from hw_backends.cache import LatencyCache
from hw_backends.errors import ProfileError, SimulationError, SimulationTimeout
from hw_backends.precision import SimJob
from hw_backends.profile import read_yaml_mapping, validated
from hw_backends.report import LayerLatency
from hw_backends.workload import Layer

_SHAPE_FIELDS = ("kind", "in_channels", "out_channels", "in_h", "in_w", "kernel_h", "kernel_w",
                 "stride_h", "stride_w", "pad_h", "pad_w", "groups")
_STDERR_TAIL = 2000


class CommandProfile(pydantic.BaseModel):
    """A device measured by a program.

    Attributes:
        name: The device's name, shown in reports and part of the cache key.
        description: One line for listings.
        clock_hz: Clock frequency; ``report.seconds = report.cycles / clock_hz``.
        command: The program and its arguments (``{python}`` and ``{here}`` are substituted).
        timeout_s: Longest one measurement may take.
        params: Anything the program needs; passed to it unchanged and part of the cache key.
        folder: Folder ``{here}`` stands for (the profile file's folder; else the working one).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str = pydantic.Field(min_length=1)
    description: str = ""
    clock_hz: float = pydantic.Field(gt=0)
    command: list[str] = pydantic.Field(min_length=1)
    timeout_s: float = pydantic.Field(default=60.0, gt=0)
    params: dict[str, Any] = {}
    folder: str = "."

    @functools.cached_property
    def content_hash(self) -> str:
        """Hash of the fields that change measurements: name, command and params."""
        data = {"name": self.name, "command": self.command, "params": self.params}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def argv(self) -> list[str]:
        """The command with ``{python}`` and ``{here}`` substituted."""
        here = str(Path(self.folder).resolve())
        return [arg.replace("{python}", sys.executable).replace("{here}", here) for arg in self.command]


def load_command_profile(profile: "str | Path | CommandProfile | Mapping[str, Any]") -> CommandProfile:
    """A :class:`CommandProfile` from a YAML path, a mapping of its fields, or itself.

    Raises:
        ProfileError: The file is missing or not YAML, or a field is missing, unknown or invalid
            (the message names the field and the file).
    """
    if isinstance(profile, CommandProfile):
        return profile
    if isinstance(profile, Mapping):
        return validated(CommandProfile, dict(profile), "command profile")
    path = Path(str(profile)).expanduser()
    if not path.is_file():
        raise ProfileError(f"command profile {str(profile)!r} is not a file; the command backend needs a "
                           "YAML with name, clock_hz and command (see examples/command_profile.yaml)")
    data = read_yaml_mapping(path.read_text(), f"command profile {path}")
    data.setdefault("folder", str(path.parent))
    return validated(CommandProfile, data, f"command profile {path}")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One program run: a layer shape at a weight and activation bit width.

    Layers of equal shape are one measurement; ``layer`` only names it in the request.
    """

    shape: tuple
    weight_bits: int
    act_bits: int
    layer: Layer = dataclasses.field(compare=False)

    @classmethod
    def of(cls, layer: Layer, weight_bits: int, act_bits: int) -> "Measurement":
        return cls(tuple(getattr(layer, f) for f in _SHAPE_FIELDS), weight_bits, act_bits, layer)

    def key(self) -> tuple:
        return self.shape + (self.weight_bits, self.act_bits)

    def request(self, profile: CommandProfile) -> dict[str, Any]:
        layer = {f: getattr(self.layer, f) for f in ("name",) + _SHAPE_FIELDS}
        return {"layer": layer, "weight_bits": self.weight_bits, "act_bits": self.act_bits,
                "profile": {"name": profile.name, "clock_hz": profile.clock_hz, "params": profile.params}}


class CommandBackend(Backend):
    """Latency from a user program run once per distinct layer shape and bit widths.

    Args:
        profile: A command profile: YAML path, mapping of its fields, or :class:`CommandProfile`.
        cache: A database URL, a :class:`LatencyCache`, ``None`` for the default persistent cache
            (``$BREVITAS_AMED_CACHE`` or ``~/.cache/brevitas-amed/latency.db``), or ``False`` for
            memory only.

    Raises:
        ProfileError: If the profile cannot be loaded.
        ValueError: If the cache URL is invalid.
    """

    name = "command"
    version = "1"

    def __init__(self, profile: "str | Path | CommandProfile | Mapping[str, Any]",
                 cache: "str | LatencyCache | bool | None" = None) -> None:
        super().__init__(profile, cache)

    @staticmethod
    def read_profile(profile: "str | Path | CommandProfile | Mapping[str, Any]") -> CommandProfile:
        """A command profile, not a systolic-array one (see :func:`load_command_profile`)."""
        return load_command_profile(profile)

    @staticmethod
    def available_profiles() -> list[str]:
        """Command profiles are user files; none is shipped."""
        return []

    def plan(self, layer: Layer, weight_bits: int, act_bits: int) -> SimJob:
        """The layer as it is, at its own bits: no precision model in between."""
        return SimJob(spec=Measurement.of(layer, weight_bits, act_bits), repeats=1)

    def simulate_specs(self, specs: Mapping[Measurement, str],
                       progress: bool) -> Iterator[tuple[Measurement, LayerLatency]]:
        """Run the program once per measurement, one at a time, in order."""
        for spec, label in specs.items():
            yield spec, LayerLatency(cycles=self._measure(spec, label))

    def _measure(self, spec: Measurement, label: str) -> int:
        """Run the program on one layer and return the cycles it reports.

        Raises:
            SimulationTimeout: It ran past ``timeout_s`` (it is killed with its children).
            SimulationError: It cannot start, exits non-zero (stderr tail included) or prints no
                valid ``{"cycles": n}`` line.
        """
        argv, where = self.profile.argv(), f"layer {label} on command profile {self.profile.name!r}"
        try:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, start_new_session=True)
        except OSError as exc:
            raise SimulationError(f"cannot start measurement command {argv} for {where}: {exc}; fix "
                                  "'command' in the profile", layer=label, profile=self.profile.name) from exc
        try:
            stdout, stderr = process.communicate(json.dumps(spec.request(self.profile)), timeout=self.profile.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise SimulationTimeout(f"measurement command took longer than {self.profile.timeout_s:g} s on {where}; "
                                    "raise timeout_s in the profile or make the program faster",
                                    layer=label, profile=self.profile.name) from None
        if process.returncode != 0:
            tail = stderr.strip()[-_STDERR_TAIL:] or "(no stderr)"
            raise SimulationError(f"measurement command {argv} exited with status {process.returncode} on "
                                  f"{where}; its stderr ends with:\n{tail}", layer=label, profile=self.profile.name)
        return _parse_cycles(stdout, where, label, self.profile.name)


def _parse_cycles(stdout: str, where: str, label: str, profile: str) -> int:
    lines = [line for line in stdout.splitlines() if line.strip()]
    shown = repr(lines[-1][:200]) if lines else "nothing"
    try:
        cycles = json.loads(lines[-1])["cycles"]
    except (IndexError, ValueError, KeyError, TypeError):
        raise SimulationError(f"measurement command printed {shown} last on {where}; its last stdout line must be "
                              'a JSON object like {"cycles": 1234}', layer=label, profile=profile) from None
    if isinstance(cycles, bool) or not isinstance(cycles, (int, float)) or not math.isfinite(cycles) or cycles < 0:
        raise SimulationError(f"measurement command reported cycles={cycles!r} on {where}; cycles must be a "
                              "finite non-negative number", layer=label, profile=profile)
    return int(round(cycles))
