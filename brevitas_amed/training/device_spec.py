"""The recipe's ``device`` as text, and how local workers share devices: no torch here, so the
recipe schema and the launch of helper workers stay light (:mod:`~brevitas_amed.training.device`
turns a spec into a torch device)."""

from __future__ import annotations

import re

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:[0-9]+)$")


def check_device_spec(spec: str) -> str:
    """``spec`` itself when it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ValueError: Any other text.
    """
    if not isinstance(spec, str) or not DEVICE_PATTERN.match(spec):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N (N = 0, 1, ...), got {spec!r}")
    return spec


def worker_devices(spec: str, workers: int, cuda_devices: int) -> list[str]:
    """The device of each of ``workers`` local workers: with ``auto`` or ``cuda`` and GPUs, one
    GPU each, round-robin; an explicit ``cuda:N`` or ``cpu`` (or no GPU) is shared by all."""
    check_device_spec(spec)
    if spec in ("auto", "cuda") and cuda_devices:
        return [f"cuda:{i % cuda_devices}" for i in range(workers)]
    if spec == "auto":
        return ["cpu"] * workers
    return [spec] * workers
