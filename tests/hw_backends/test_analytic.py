"""The analytic backend: exact against SCALE-Sim with ideal bandwidth, and monotone in bits."""

from __future__ import annotations

import functools

import pytest

import hw_backends
from hw_backends import Layer, load_profile
from hw_backends._scalesim_compat import simulate
from hw_backends.analytic import estimate
from hw_backends.precision import simulation_job

# A stride-2/3 layer whose output size needs the crop, beside the shared small layers.
ODD_LAYER = Layer("odd", "conv", 5, 7, 11, 8, 3, 1, 2, 3, 1, 0)


def _variant(profile: str, dataflow: str):
    base = load_profile(profile)
    return base.model_copy(update={"dataflow": dataflow, "name": f"{profile}-{dataflow}"})


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
@pytest.mark.parametrize("profile", ["scalesim", "eyeriss"])
@pytest.mark.parametrize("bits", [(8, 8), (4, 2)])
def test_analytic_equals_scalesim_in_calc_mode(profile, dataflow, bits, small_layers):
    hw = _variant(profile, dataflow)
    for layer in small_layers + (ODD_LAYER,):
        spec = simulation_job(layer, hw, *bits).spec
        simulated = simulate(spec, hw, layer.name)
        predicted = estimate(spec, hw)
        assert predicted.cycles == simulated.cycles, (layer.name, profile, dataflow)
        assert predicted.stall_cycles == simulated.stall_cycles == 0
        assert predicted.mapping_efficiency == pytest.approx(simulated.mapping_efficiency)
        assert predicted.utilization == pytest.approx(simulated.utilization)


@functools.lru_cache(maxsize=None)
def _network(name: str):
    torchvision = pytest.importorskip("torchvision")
    from brevitas_amed.quant import build_workload

    return build_workload(getattr(torchvision.models, name)(), (3, 224, 224), name=name)


@pytest.mark.parametrize("network", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("profile", ["scalesim", "eyeriss", "lowmem"])
def test_fewer_bits_never_slower(network, profile):
    workload = _network(network)
    backend = hw_backends.get("analytic", profile=profile)
    widths = range(1, 9)
    table = backend.layer_table(workload, widths, widths)
    for name, costs in table.items():
        for (w, a), cost in costs.items():
            if w > 1:
                assert costs[(w - 1, a)].cycles <= cost.cycles, (name, w, a)
            if a > 1:
                assert costs[(w, a - 1)].cycles <= cost.cycles, (name, w, a)
    total = {combo: sum(costs[combo].cycles for costs in table.values()) for combo in [(2, 2), (8, 8)]}
    assert total[(2, 2)] < total[(8, 8)]


def test_warm_allocation_costs_under_a_millisecond():
    import time

    workload = _network("resnet18")
    backend = hw_backends.get("analytic", profile="eyeriss")
    bits = workload.uniform_bits(4, 3)
    backend.latency(workload, bits)
    best = min(_timed(backend, workload, bits, time) for _ in range(5))
    assert best < 1e-3


def _timed(backend, workload, bits, time) -> float:
    start = time.perf_counter()
    for _ in range(100):
        backend.latency(workload, bits)
    return (time.perf_counter() - start) / 100


@pytest.mark.parametrize("profile", ["scalesim", "eyeriss", "lowmem"])
def test_grouped_and_squeeze_excitation_layers_are_costed(profile):
    """RegNet/ResNeXt grouped convs cost ``groups`` convolutions of one group; the 1x1 convs of a
    squeeze-and-excitation block on a 1x1 map cost what a linear layer of that shape costs."""
    backend = hw_backends.get("analytic", profile=profile)
    grouped = Layer("grouped", "conv", 32, 32, 8, 8, 3, 3, 1, 1, 1, 1, groups=4)
    one_group = Layer("one_group", "conv", 8, 8, 8, 8, 3, 3, 1, 1, 1, 1)
    se_fc = Layer("se_fc", "conv", 48, 12, 1, 1)
    linear = Layer("linear", "linear", 48, 12)
    wl = hw_backends.Workload("edge", (grouped, one_group, se_fc, linear))
    for bits in ((8, 8), (4, 2)):
        cost = backend.latency(wl, wl.uniform_bits(*bits)).per_layer
        assert cost["grouped"].cycles == 4 * cost["one_group"].cycles > 0
        assert cost["se_fc"].cycles == cost["linear"].cycles > 0


# Small lowmem layers whose streams overflow the SRAM windows: weight streams that wrap (a fold
# straddling the window falls behind it), an ifmap stream read once per column fold, a linear
# layer, a depthwise layer with packed activations.
LOWMEM_LAYERS = (
    Layer("pointwise", "conv", 128, 96, 4, 4),
    Layer("wide_map", "conv", 32, 48, 24, 24),
    Layer("fc", "linear", 256, 100),
    Layer("depthwise", "conv", 8, 8, 20, 20, 3, 3, 1, 1, 1, 1, groups=8),
)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [(8, 8), (8, 2), (2, 8), (4, 4), (3, 5)])
def test_analytic_replays_scalesim_memory_on_lowmem(bits):
    """Where the im2col stream holds each pixel once, the replay of SCALE-Sim's finite-bandwidth
    memory system is exact, wrap-around re-fetches included."""
    hw = load_profile("lowmem")
    for layer in LOWMEM_LAYERS:
        spec = simulation_job(layer, hw, *bits).spec
        simulated, predicted = simulate(spec, hw, layer.name), estimate(spec, hw)
        assert predicted.cycles == simulated.cycles, (layer.name, bits)
        assert predicted.stall_cycles == simulated.stall_cycles, (layer.name, bits)


@pytest.mark.slow
def test_analytic_credits_im2col_copies_on_lowmem():
    """A 3x3 layer's ifmap stream repeats each pixel up to 9 times and SCALE-Sim serves a pixel
    from any copy in its window: exact on most bit pairs, within 5% on all."""
    hw = load_profile("lowmem")
    layer = Layer("c3", "conv", 64, 64, 8, 8, 3, 3, 1, 1, 1, 1)
    for bits in [(8, 8), (8, 2), (2, 8), (4, 4), (3, 5)]:
        spec = simulation_job(layer, hw, *bits).spec
        simulated, predicted = simulate(spec, hw, layer.name).cycles, estimate(spec, hw).cycles
        assert abs(predicted - simulated) <= 0.05 * simulated, bits
        if bits != (3, 5):
            assert predicted == simulated, bits
