"""Shared fixtures: small workloads and a latency cache that never touches ~/.cache."""

from __future__ import annotations

import pytest

from hw_backends import Layer, Workload

# Small layers SCALE-Sim simulates in well under a second; (in + 2*pad - kernel) divides by the
# stride so SCALE-Sim's rounded-up output size equals PyTorch's without cropping.
SMALL_LAYERS = (
    Layer("conv3x3", "conv", 8, 16, 8, 8, 3, 3, 1, 1, 1, 1),
    Layer("conv_s2", "conv", 16, 24, 9, 9, 3, 3, 2, 2, 1, 1),
    Layer("pointwise", "conv", 24, 40, 5, 5),
    Layer("depthwise", "conv", 12, 12, 6, 6, 3, 3, 1, 1, 1, 1, groups=12),
    Layer("fc", "linear", 72, 10),
)


@pytest.fixture
def small_layers() -> tuple[Layer, ...]:
    return SMALL_LAYERS


@pytest.fixture
def small_workload() -> Workload:
    return Workload("small", SMALL_LAYERS)


@pytest.fixture(autouse=True)
def cache_url(tmp_path, monkeypatch) -> str:
    """Point the default latency cache at a temporary SQLite file for every test."""
    url = f"sqlite:///{tmp_path / 'latency.db'}"
    monkeypatch.setenv("BREVITAS_AMED_CACHE", url)
    return url
