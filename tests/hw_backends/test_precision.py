"""The precision model counts each effect of low bits once; no layer beats its DRAM floor; fewer
bits are never slower, on every registered backend and profile."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

import hw_backends
from hw_backends import Layer, Workload, load_profile
from hw_backends.precision import dram_floor_cycles, element_bits, simulation_job

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Memory-bound on lowmem but quick in SCALE-Sim: weights beyond the 8 KB active half, small maps.
FLOOR_LAYERS = (
    Layer("conv", "conv", 64, 64, 4, 4, 3, 3, 1, 1, 1, 1),
    Layer("pointwise", "conv", 128, 96, 4, 4),
    Layer("depthwise", "conv", 32, 32, 8, 8, 3, 3, 1, 1, 1, 1, groups=32),
    Layer("wide_map", "conv", 16, 16, 24, 24, 3, 3, 1, 1, 1, 1),
    Layer("fc", "linear", 256, 100),
)
FLOOR_BITS = ((8, 8), (8, 2), (2, 8), (4, 4), (2, 2), (1, 1), (3, 5))


def _stored_bits(layer: Layer, spec, bits) -> tuple[int, int]:
    """Bits the simulated filter and ifmap hold, from the spec's element counts and widths."""
    filter_elems = spec.num_filters * spec.channels * spec.filter_h * spec.filter_w * layer.groups
    ifmap_elems = spec.channels * spec.ifmap_h * spec.ifmap_w * layer.groups
    return filter_elems * bits.filter, ifmap_elems * bits.ifmap


def test_each_simulated_element_holds_its_real_values_once():
    """w8/a2: fusion packs 4 activations per input element *and* 4 weights per filter element,
    so the filter element is 32 bits: weight bytes stay those of 8-bit weights (issue 16)."""
    lowmem = load_profile("lowmem")
    layer = Layer("c", "conv", 512, 512, 7, 7, 3, 3, 1, 1, 1, 1)
    base, low_act = (simulation_job(layer, lowmem, *bits).spec for bits in ((8, 8), (8, 2)))
    assert low_act.channels == 128 and low_act.num_filters == 512
    assert (low_act.filter_sram, low_act.filter_bw) == (base.filter_sram // 4, base.filter_bw // 4)
    assert (low_act.ifmap_sram, low_act.ifmap_bw) == (base.ifmap_sram, base.ifmap_bw)
    for bits in [(8, 8), (8, 2), (2, 2), (3, 3), (5, 7), (1, 1), (2, 1)]:
        spec = simulation_job(layer, lowmem, *bits).spec
        weight_bits, input_bits = _stored_bits(layer, spec, element_bits(layer, lowmem, *bits))
        assert weight_bits == layer.weight_count * bits[0]  # each weight once, at its own width
        assert input_bits == 512 * spec.ifmap_h * spec.ifmap_w * bits[1]


def test_one_bit_computes_as_two_bit_but_packs_as_one_bit():
    lowmem, stock = load_profile("lowmem"), load_profile("scalesim")
    layer = Layer("c", "conv", 64, 64, 8, 8, 3, 3, 1, 1, 1, 1)
    one, two = simulation_job(layer, lowmem, 1, 1).spec, simulation_job(layer, lowmem, 2, 2).spec
    assert (one.channels, one.num_filters) == (two.channels, two.num_filters) == (16, 16)
    assert one.ifmap_bw == 2 * two.ifmap_bw and one.filter_sram == 2 * two.filter_sram
    assert simulation_job(layer, stock, 1, 1).spec == simulation_job(layer, stock, 2, 2).spec


def test_depthwise_gains_no_compute_but_still_packs_memory():
    lowmem = load_profile("lowmem")
    layer = Layer("dw", "conv", 32, 32, 8, 8, 3, 3, 1, 1, 1, 1, groups=32)
    wide, narrow = simulation_job(layer, lowmem, 8, 8).spec, simulation_job(layer, lowmem, 8, 2).spec
    assert (narrow.channels, narrow.num_filters) == (wide.channels, wide.num_filters) == (1, 1)
    assert narrow.ifmap_bw == 4 * wide.ifmap_bw  # 2-bit activations, 4 to a byte


@pytest.mark.parametrize("backend", ["analytic", pytest.param("scalesim", marks=pytest.mark.slow)])
def test_no_layer_is_faster_than_its_dram_floor_on_lowmem(backend):
    """Each raw (w, a) cost, preload included, is at least the floor of reading every weight and
    input byte once; the floor grows with bits, so the envelope (a minimum over more bits) keeps
    it too. The analytic backend is also checked through ``latency`` (envelope and all)."""
    lowmem = load_profile("lowmem")
    sim = hw_backends.get(backend, profile=lowmem, **({"workers": 2, "cache": False} if backend == "scalesim" else {}))
    jobs = {(layer, bits): simulation_job(layer, lowmem, *bits) for layer in FLOOR_LAYERS for bits in FLOOR_BITS}
    results = sim.spec_results({job.spec: f"{layer.name} {bits}" for (layer, bits), job in jobs.items()})
    for (layer, bits), job in jobs.items():
        floor = dram_floor_cycles(layer, lowmem, *bits)
        assert floor > 0
        assert sim.preloaded(job.spec, results[job.spec]).cycles * job.repeats >= floor, (backend, layer.name, bits)
    if backend == "analytic":
        workload = Workload("floor", FLOOR_LAYERS)
        for bits in FLOOR_BITS:
            report = sim.latency(workload, workload.uniform_bits(*bits))
            for layer in FLOOR_LAYERS:
                assert report.per_layer[layer.name].cycles >= dram_floor_cycles(layer, lowmem, *bits)


def test_dram_floor_counts_packed_bytes():
    lowmem = load_profile("lowmem")
    layer = Layer("c", "conv", 512, 512, 7, 7, 3, 3, 1, 1, 1, 1)
    weights = 512 * 512 * 9
    assert dram_floor_cycles(layer, lowmem, 8, 8) == weights // 8
    assert dram_floor_cycles(layer, lowmem, 8, 2) == weights // 8
    assert dram_floor_cycles(layer, lowmem, 2, 2) == math.ceil(weights * 2 / 64)
    assert dram_floor_cycles(layer, lowmem, 3, 8) == math.ceil(weights * 3 / 64)


MONOTONE_LAYERS = (
    Layer("conv", "conv", 32, 32, 4, 4, 3, 3, 1, 1, 1, 1),
    Layer("depthwise", "conv", 16, 16, 6, 6, 3, 3, 1, 1, 1, 1, groups=16),
    Layer("fc", "linear", 160, 64),  # 10 KB of weights: beyond the 8 KB active half on lowmem
)


def _backends():
    """Every registered backend with every profile it lists (the command backend: the example).

    Simulators and programs get the smallest layers: the envelope at (1, 1) needs all 64 pairs.
    """
    for name, profiles in hw_backends.available().items():
        layers = MONOTONE_LAYERS if name == "analytic" else MONOTONE_LAYERS[2:]
        if name == "command":
            yield name, str(EXAMPLES / "command_profile.yaml"), layers
            continue
        for profile in profiles:
            yield name, profile, layers


def _id(value) -> str:
    return "+".join(layer.name for layer in value) if isinstance(value, tuple) else Path(str(value)).stem


@pytest.mark.slow
@pytest.mark.parametrize("name, profile, layers", list(_backends()), ids=_id)
def test_fewer_bits_are_never_slower_on_every_backend_and_profile(name, profile, layers):
    if name == "finn":  # the plugin backend runs FINN in its own environment
        from brevitas_amed.finn.env import venv_path, venv_python

        if not venv_python(venv_path()).is_file():
            pytest.skip(f"no FINN environment at {venv_path()}: build it with `brevitas-amed finn --setup`")
    kwargs = {"cache": False} if name != "analytic" else {}
    backend = hw_backends.get(name, profile=profile, **kwargs)
    widths = range(1, 9)
    table = backend.layer_table(Workload("m", layers), widths, widths)
    for layer, costs in table.items():
        for (w, a), (w2, a2) in itertools.product(costs, costs):
            if w2 <= w and a2 <= a:
                assert costs[(w2, a2)].cycles <= costs[(w, a)].cycles, (name, profile, layer, (w, a), (w2, a2))
