"""The scalesim backend against SCALE-Sim's own file-based runs, its cache, pool and errors."""

from __future__ import annotations

import csv
import multiprocessing
import sqlite3

import pytest

import hw_backends
from hw_backends import Layer, Workload, load_profile
from hw_backends.base import dominating
from hw_backends.precision import simulation_job

CONFIG = """[general]
run_name = parity
[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = {ifmap}
FilterSramSzkB = {filter}
OfmapSramSzkB = {ofmap}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = 10
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32
[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2
[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40
[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False
"""


def _topology_row(layer: Layer) -> str:
    """SCALE-Sim's own encoding: padded input, depthwise as a 'DP' layer, linear as 1x1 conv."""
    if layer.is_depthwise:
        return (f"DP{layer.name}, {layer.in_h + 2 * layer.pad_h}, {layer.in_w + 2 * layer.pad_w}, "
                f"{layer.kernel_h}, {layer.kernel_w}, {layer.in_channels}, 1, {layer.stride_h},")
    return (f"{layer.name}, {layer.in_h + 2 * layer.pad_h}, {layer.in_w + 2 * layer.pad_w}, {layer.kernel_h}, "
            f"{layer.kernel_w}, {layer.in_channels}, {layer.out_channels}, {layer.stride_h},")


def _scalesim_own_cycles(tmp_path, profile_name: str, workload: Workload) -> list[int]:
    """Total Cycles per workload layer from SCALE-Sim's top-level class and its report CSV."""
    import hw_backends._scalesim_compat  # noqa: F401 - numpy>=2.3 workaround for SCALE-Sim itself
    from scalesim.scale_sim import scalesim

    hw = load_profile(profile_name)
    config = tmp_path / "scale.cfg"
    config.write_text(CONFIG.format(rows=hw.array.rows, cols=hw.array.cols, ifmap=int(hw.sram.ifmap_kb),
                                    filter=int(hw.sram.filter_kb), ofmap=int(hw.sram.ofmap_kb),
                                    dataflow=hw.dataflow))
    topology = tmp_path / "topology.csv"
    topology.write_text("Layer, IFMAP H, IFMAP W, Filt H, Filt W, Channels, Filters, Stride,\n"
                        + "\n".join(_topology_row(layer) for layer in workload) + "\n")
    layout = tmp_path / "layout.csv"
    layout.write_text("Layer, a, b, c, d, e, f,\n" + "".join(f"{l.name}, 1, 1, 1, 1, 1, 1,\n" for l in workload))
    sim = scalesim(save_disk_space=True, verbose=False, config=str(config), topology=str(topology), layout=str(layout))
    sim.run_scale(top_path=str(tmp_path / "out"))
    with open(tmp_path / "out" / "parity" / "COMPUTE_REPORT.csv") as f:
        rows = [int(row[" Total Cycles"]) for row in csv.DictReader(f)]
    cycles, index = [], 0
    for layer in workload:  # a DP layer's channels are separate rows: sum them
        count = layer.in_channels if layer.is_depthwise else 1
        cycles.append(sum(rows[index:index + count]))
        index += count
    return cycles


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["scalesim", "eyeriss"])
def test_8bit_equals_scalesim_total_cycles(tmp_path, profile, small_workload, capsys):
    backend = hw_backends.get("scalesim", profile=profile, workers=2)
    report = backend.latency(small_workload, small_workload.uniform_bits(8, 8))
    expected = _scalesim_own_cycles(tmp_path, profile, small_workload)
    assert [report.per_layer[name].cycles for name in small_workload.names] == expected
    assert report.cycles == sum(expected)
    assert report.seconds == pytest.approx(report.cycles / load_profile(profile).clock_hz)
    assert capsys.readouterr().out == ""  # SCALE-Sim's prints are suppressed


def _entries(url: str) -> int:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return conn.execute("select count(*) from latency").fetchone()[0]


@pytest.mark.slow
def test_cache_miss_then_hit_across_instances(cache_url, small_workload):
    bits = small_workload.uniform_bits(8, 4)
    first = hw_backends.get("scalesim", profile="lowmem", cache=cache_url, workers=2).latency(small_workload, bits)
    lowmem = load_profile("lowmem")  # the envelope simulates w8 at a4..a8; packing makes each distinct
    specs = {simulation_job(layer, lowmem, *pair).spec for layer in small_workload for pair in dominating(8, 4)}
    assert _entries(cache_url) == len(specs) > len(small_workload)
    # A timeout no simulation could meet: the second instance can only answer from the cache.
    warm = hw_backends.get("scalesim", profile="lowmem", cache=cache_url, timeout_s=1e-9)
    assert warm.latency(small_workload, bits) == first
    assert warm.latency(small_workload, small_workload.uniform_bits(8, 8)).cycles >= first.cycles
    with pytest.raises(hw_backends.SimulationTimeout):
        warm.latency(small_workload, small_workload.uniform_bits(4, 8))


def test_bitfusion_dedupes_on_the_simulated_shape(cache_url):
    layer = Layer("c", "conv", 8, 8, 4, 4, 3, 3, 1, 1, 1, 1)
    backend = hw_backends.get("scalesim", profile="scalesim", cache=cache_url, workers=2)
    table = backend.layer_table(Workload("w", (layer,)), [5, 6, 7, 8], [5, 6, 7, 8])
    assert len({cost.cycles for cost in table["c"].values()}) == 1
    assert _entries(cache_url) == 1  # bits 5..8 all run as 8 on Bit Fusion PEs


def _write_from_process(url: str, bits: int, queue) -> None:
    workload = Workload("w", (Layer("c", "conv", 16, 16, 8, 8, 3, 3, 1, 1, 1, 1),
                              Layer("d", "conv", 8, 24, 6, 6, 3, 3, 1, 1, 1, 1)))
    backend = hw_backends.get("scalesim", profile="lowmem", cache=url, workers=1)
    table = backend.layer_table(workload, [bits, 8], [bits, 8])
    queue.put({(name, combo): cost.cycles for name, costs in table.items() for combo, cost in costs.items()})


@pytest.mark.slow
def test_two_processes_write_one_sqlite_cache(cache_url):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_write_from_process, args=(cache_url, bits, queue)) for bits in (4, 2)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=240) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    shared = set(results[0]) & set(results[1])
    assert shared and all(results[0][key] == results[1][key] for key in shared)
    backend = hw_backends.get("scalesim", profile="lowmem", cache=cache_url, timeout_s=1e-9)
    workload = Workload("w", (Layer("c", "conv", 16, 16, 8, 8, 3, 3, 1, 1, 1, 1),
                              Layer("d", "conv", 8, 24, 6, 6, 3, 3, 1, 1, 1, 1)))
    for key, cycles in {**results[0], **results[1]}.items():
        name, (w, a) = key
        assert backend.latency(workload, {"c": (w, a), "d": (w, a)}).per_layer[name].cycles == cycles


def test_per_layer_timeout_names_layer_and_profile():
    workload = Workload("w", (Layer("big", "conv", 64, 64, 28, 28, 3, 3, 1, 1, 1, 1),))
    backend = hw_backends.get("scalesim", profile="eyeriss", cache=False, timeout_s=1e-9)
    with pytest.raises(hw_backends.SimulationTimeout, match=r"big .*'eyeriss'"):
        backend.latency(workload, workload.uniform_bits())


def test_layer_scalesim_cannot_simulate_raises_simulation_error():
    base = load_profile("lowmem")
    broken = base.model_copy(update={"name": "tiny-ofmap",
                                     "sram": base.sram.model_copy(update={"ofmap_kb": 0.001})})
    workload = Workload("w", (Layer("c", "conv", 4, 4, 6, 6, 3, 3),))
    with pytest.raises(hw_backends.SimulationError, match=r"layer c .*'tiny-ofmap'") as info:
        hw_backends.get("scalesim", profile=broken, cache=False).latency(workload, workload.uniform_bits())
    assert info.value.profile == "tiny-ofmap" and info.value.layer.startswith("c ")


def test_bad_bits_name_the_layer(small_workload):
    backend = hw_backends.get("analytic", profile="scalesim")
    bits = small_workload.uniform_bits(4, 4)
    with pytest.raises(ValueError, match="'fc'.*activation bits .*1..8"):
        backend.latency(small_workload, {**bits, "fc": (4, 9)})
    with pytest.raises(ValueError, match="'conv3x3'.*weight bits"):
        backend.latency(small_workload, {**bits, "conv3x3": (0, 4)})
    del bits["depthwise"]
    with pytest.raises(ValueError, match="'depthwise' has no bits"):
        backend.latency(small_workload, bits)
    with pytest.raises(ValueError, match="'nope' in bits is not in workload"):
        backend.latency(small_workload, {**small_workload.uniform_bits(), "nope": (4, 4)})


def test_bits_accept_lists_and_numpy_ints(small_workload):
    np = pytest.importorskip("numpy")
    backend = hw_backends.get("analytic", profile="eyeriss")
    expected = backend.latency(small_workload, small_workload.uniform_bits(4, 2)).cycles
    as_lists = {name: [4, 2] for name in small_workload.names}
    as_numpy = {name: (np.int64(4), np.int64(2)) for name in small_workload.names}
    assert backend.latency(small_workload, as_lists).cycles == expected
    assert backend.latency(small_workload, as_numpy).cycles == expected


def test_refuses_a_layer_whose_prefetches_would_explode():
    """512->512 3x3 at 7x7 on lowmem: SCALE-Sim's filter buffer would re-read its whole weight
    stream about 280,000 times; the backend says so at once instead of running for days."""
    workload = Workload("w", (Layer("late", "conv", 512, 512, 7, 7, 3, 3, 1, 1, 1, 1),))
    backend = hw_backends.get("scalesim", profile="lowmem", cache=False)
    with pytest.raises(hw_backends.SimulationError, match=r"prefetches on layer late .*'lowmem'.*'analytic'"):
        backend.latency(workload, workload.uniform_bits(8, 8))
    with pytest.raises(ValueError, match="max_prefetches"):
        hw_backends.get("scalesim", profile="lowmem", max_prefetches=0)
