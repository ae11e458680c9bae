"""Exceptions raised by hardware backends; each message says what to change."""

from __future__ import annotations


class HWBackendError(Exception):
    """Base class of every error raised by :mod:`hw_backends`."""


class UnknownBackendError(HWBackendError, LookupError):
    """A backend name that no registration or entry point provides."""


class ProfileError(HWBackendError, ValueError):
    """A hardware profile that cannot be found, parsed or validated."""


class SimulationError(HWBackendError, RuntimeError):
    """A layer that a simulator could not simulate.

    Attributes:
        layer: Name of the layer (the first one that needed the failed simulation).
        profile: Name of the hardware profile.
    """

    def __init__(self, message: str, layer: str = "", profile: str = "") -> None:
        super().__init__(message)
        self.layer = layer
        self.profile = profile


class SimulationTimeout(SimulationError):
    """A layer whose simulation ran past the backend's per-layer timeout."""
