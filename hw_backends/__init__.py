"""Bit-aware latency from hardware models. Imports no torch, brevitas or brevitas_amed."""

from hw_backends.workload import Layer, Workload

__all__ = ["Layer", "Workload"]
