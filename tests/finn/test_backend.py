"""The ``finn`` latency backend: FINN's own per-layer estimates, cached, behind the registry.

Tests that run FINN skip only when its environment does not exist (``brevitas-amed finn --setup``
builds it); the others need no FINN.
"""

from __future__ import annotations

import math

import pytest

import hw_backends
from brevitas_amed.finn import backend as finn_backend
from brevitas_amed.finn.backend import FinnBackend, FinnLayer
from brevitas_amed.finn.env import ENV_VAR
from brevitas_amed.finn.fpga_profile import load_fpga_profile
from brevitas_amed.job.recipe import load_recipe
from hw_backends import Layer, Workload

CONV = Layer("conv", "conv", 16, 32, in_h=8, in_w=8, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1)
DEPTHWISE = Layer("dw", "conv", 32, 32, in_h=8, in_w=8, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1, groups=32)
FC = Layer("fc", "linear", 64, 10)
WORKLOAD = Workload("tiny", (CONV, DEPTHWISE, FC))


@pytest.fixture(scope="module")
def cache_url(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('finn_cache') / 'latency.db'}"


@pytest.fixture(scope="module")
def table(finn_env, cache_url):
    """Every layer at every bit pair 1..8, from one backend writing the cache."""
    backend = hw_backends.get("finn", profile="zynq7020", cache=cache_url)
    return backend.layer_table(WORKLOAD, range(1, 9), range(1, 9))


def test_finn_estimates_are_finns_own_model(table):
    # FINN's MVAU_hls LUT model at the folding SetFolding picks for 10,000 frames/s at 100 MHz
    # (PE=4, SIMD=9 for 4-bit weights): 300 + 1.1*PE*(mult + adder tree + accumulator)
    pe, simd, w, a, mw = 4, 9, 4, 4, 16 * 9
    mult = simd * (2 * math.ceil((w + a) / 6) - 1) * (w + a)
    adders = (w + a) * (2 * simd - 1)
    alpha = math.log2(mw) + w + a - 1
    acc = math.ceil(alpha + math.log2(1 + 2 ** -alpha) + 1)
    assert table["conv"][(4, 4)].cycles == int(300 + 1.1 * pe * (mult + adders + acc)) == 1919
    # every layer keeps up with the target: FINN's expected cycles within 1e8 / 1e4 per frame
    assert all(0 < cost.utilization <= 1 for costs in table.values() for cost in costs.values())
    assert table["conv"][(8, 8)].cycles > table["conv"][(2, 2)].cycles > 300
    assert table["dw"][(8, 8)].cycles > table["dw"][(2, 2)].cycles
    assert table["fc"][(8, 8)].cycles > table["fc"][(2, 2)].cycles


def test_fewer_bits_never_cost_more(table):
    for layer, costs in table.items():
        for (w, a), cost in costs.items():
            for w2, a2 in ((w + 1, a), (w, a + 1)):
                if (w2, a2) in costs:
                    assert cost.cycles <= costs[(w2, a2)].cycles, (layer, (w, a), (w2, a2))


def test_second_backend_reads_the_cache_without_running_finn(table, cache_url, monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError("FINN was run although every estimate is cached")

    monkeypatch.setattr(finn_backend.subprocess, "run", no_subprocess)
    again = FinnBackend("zynq7020", cache=cache_url)
    report = again.latency(WORKLOAD, WORKLOAD.uniform_bits(4, 4))
    assert report.backend == "finn" and report.profile == "zynq7020"
    assert {name: cost.cycles for name, cost in report.per_layer.items()} == {
        name: costs[(4, 4)].cycles for name, costs in table.items()}
    # seconds: the frame interval at FINN's folding (the slowest layer), at most 1 / target_fps
    assert 0 < report.seconds <= 1e-4


def test_a_layer_finn_cannot_fold_for_the_target_shows_in_utilization(finn_env, tmp_path):
    profile = load_fpga_profile({**load_fpga_profile("zynq7020").model_dump(), "name": "fast", "target_fps": 1e6})
    report = FinnBackend(profile, cache=False).latency(Workload("one", (CONV,)), {"conv": (8, 8)})
    assert report.per_layer["conv"].utilization > 1  # SetFolding's weight-width limit at 8-bit weights


def test_registry_lists_finn_with_its_profile():
    assert hw_backends.available()["finn"] == ["zynq7020"]
    backend = hw_backends.get("finn", profile="zynq7020", cache=False)
    assert isinstance(backend, FinnBackend) and backend.profile.target_cycles == 10_000


def test_layers_map_to_finns_units():
    job = FinnLayer.of(CONV, 4, 2)
    assert (job.spec.op, job.spec.mw, job.spec.mh, job.spec.ofm, job.repeats) == ("MVAU", 144, 32, (8, 8), 1)
    assert FinnLayer.of(DEPTHWISE, 4, 2).spec.op == "VVAU"
    grouped = FinnLayer.of(Layer("g", "conv", 32, 64, in_h=4, in_w=4, groups=2), 4, 2)
    assert (grouped.spec.op, grouped.spec.mw, grouped.spec.mh, grouped.repeats) == ("MVAU", 16, 32, 2)
    assert FinnLayer.of(FC, 8, 8).spec.request(load_fpga_profile("zynq7020"))["weight_dtype"] == "INT8"
    assert FinnLayer.of(FC, 1, 1).spec.request(load_fpga_profile("zynq7020"))["input_dtype"] == "BINARY"


def test_recipe_with_the_finn_backend_validates_with_its_own_profile():
    recipe = load_recipe(None, ["hardware.backend=finn"])
    assert (recipe.hardware.backend, recipe.hardware.profile) == ("finn", "zynq7020")
    assert load_recipe(None, ["hardware.backend=finn", "hardware.profile=my.yaml"]).hardware.profile == "my.yaml"


def test_profile_errors_name_the_problem(tmp_path):
    with pytest.raises(hw_backends.ProfileError, match="not a shipped FINN profile \\(zynq7020\\)"):
        FinnBackend("scalesim")
    bad = tmp_path / "rtl.yaml"
    bad.write_text("name: rtl\npart: xc7z020clg400-1\nclock_hz: 1.0e+8\ntarget_fps: 1000\nimpl_style: rtl\n")
    with pytest.raises(hw_backends.ProfileError, match="use cost: DSP"):
        FinnBackend(str(bad))


def test_missing_environment_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    backend = FinnBackend("zynq7020", cache=f"sqlite:///{tmp_path / 'latency.db'}")
    with pytest.raises(hw_backends.SimulationError, match="brevitas-amed finn --setup"):
        backend.latency(WORKLOAD, WORKLOAD.uniform_bits())
    with pytest.raises(hw_backends.SimulationError, match=f"no FINN environment at {tmp_path}"):
        FinnBackend("zynq7020", cache=False).latency(WORKLOAD, WORKLOAD.uniform_bits())
