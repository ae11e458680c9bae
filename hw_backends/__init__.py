"""Bit-aware latency from hardware models. Imports no torch, brevitas or brevitas_amed.

Usage::

    import hw_backends
    hw_backends.available()                                   # backends and their profiles
    backend = hw_backends.get("scalesim", profile="eyeriss")  # or a path to a profile YAML
    report = backend.latency(workload, bits)                  # bits: {layer: (weight_bits, act_bits)}
    report.cycles, report.seconds, report.per_layer[name].cycles

Every backend reports the monotone envelope (fewer bits are never slower) and, with finite
bandwidth, includes the DRAM fill before the first cycle (see :mod:`hw_backends.base`); the
precision models are in :mod:`hw_backends.precision`.
"""

from hw_backends.analytic import AnalyticBackend
from hw_backends.base import Backend
from hw_backends.command import CommandBackend, CommandProfile
from hw_backends.errors import (HWBackendError, ProfileError, SimulationError, SimulationTimeout,
                                UnknownBackendError)
from hw_backends.profile import Profile, load_profile, shipped_profiles
from hw_backends.registry import available, get, register
from hw_backends.report import LatencyReport, LayerLatency
from hw_backends.scalesim_backend import ScaleSimBackend
from hw_backends.workload import Layer, Workload

register("analytic", AnalyticBackend)
register("command", CommandBackend)
register("scalesim", ScaleSimBackend)

__all__ = [
    "AnalyticBackend", "Backend", "CommandBackend", "CommandProfile", "HWBackendError", "LatencyReport", "Layer", "LayerLatency",
    "Profile", "ProfileError", "ScaleSimBackend", "SimulationError", "SimulationTimeout", "UnknownBackendError",
    "Workload", "available", "get", "load_profile", "register", "shipped_profiles",
]
