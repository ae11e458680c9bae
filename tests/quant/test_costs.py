"""LatencyTable: one backend table, totals equal to the backend's own latency."""

from __future__ import annotations

import random

import pytest

import hw_backends
from brevitas_amed.quant import FLOAT_AS_BITS, LatencyTable, QuantPolicy, layer_bits, quantize, side_options


@pytest.fixture(scope="module")
def backend():
    return hw_backends.get("analytic", profile="eyeriss")


POLICIES = [QuantPolicy(), QuantPolicy(first_layer="float", last_layer="float"),
            QuantPolicy(weight_bits=(2, 5), act_bits=(3, 6), first_layer="search", last_layer=4)]


@pytest.mark.parametrize("policy", POLICIES)
def test_totals_equal_the_backend_for_random_allocations(trained_digits_cnn, backend, policy):
    qmodel = quantize(trained_digits_cnn, policy)
    workload = qmodel.workload((1, 8, 8))
    table = LatencyTable(qmodel, workload, backend)
    assert table.workload is workload and table.backend is backend
    rng = random.Random(0)
    for _ in range(20):
        allocation = {k: rng.choice(c) for k, c in qmodel.search_space().items()}
        report = backend.latency(workload, layer_bits(qmodel, allocation))
        assert table.cycles(allocation) == report.cycles
        assert table.per_layer(allocation) == {name: cost.cycles for name, cost in report.per_layer.items()}
        assert table.seconds(allocation) == pytest.approx(report.seconds)
    assert table.cycles() == backend.latency(workload, layer_bits(qmodel)).cycles
    assert table.reference == backend.latency(workload, {name: (8, 8) for name in workload.names}).cycles


def test_pair_cycles_cover_the_sides_of_each_layer(trained_digits_cnn, backend):
    qmodel = quantize(trained_digits_cnn, POLICIES[1])
    table = LatencyTable(qmodel, qmodel.workload((1, 8, 8)), backend)
    for layer, (w_knob, a_knob) in qmodel.layer_knobs.items():
        pairs = table.pair_cycles(layer)
        assert set(pairs) == {(w, a) for w in side_options(qmodel, w_knob) for a in side_options(qmodel, a_knob)}
        single = backend.layer_table(table.workload, [w for w, _ in pairs], [a for _, a in pairs])[layer]
        assert all(pairs[pair] == single[pair].cycles for pair in pairs)
    assert set(table.pair_cycles("stem.0")) == {(FLOAT_AS_BITS, FLOAT_AS_BITS)}  # float first layer


def test_workload_of_another_model_is_refused(trained_digits_cnn, backend):
    import torchvision

    qmodel = quantize(trained_digits_cnn)
    other = quantize(torchvision.models.resnet18(num_classes=10)).workload((3, 32, 32))
    with pytest.raises(ValueError, match="build it with qmodel.workload"):
        LatencyTable(qmodel, other, backend)


@pytest.mark.parametrize("profile", ["scalesim", "eyeriss", "lowmem"])
def test_widest_per_level_drops_exactly_the_widths_a_wider_one_costs_no_more_than(trained_digits_cnn, profile):
    """Against every allocation of the other knobs: a width is dropped if and only if the next
    wider choice is no slower in all of them."""
    import itertools

    qmodel = quantize(trained_digits_cnn, QuantPolicy(weight_bits=(2, 4, 8), act_bits=(2, 4, 8)))
    table = LatencyTable(qmodel, qmodel.workload((1, 8, 8)), hw_backends.get("analytic", profile=profile))
    space = qmodel.search_space()
    kept = table.widest_per_level(space)
    assert list(kept) == list(space) and all(c[-1] == max(space[k]) for k, c in kept.items())
    dropped_somewhere = False
    for knob, choices in space.items():
        others = [k for k in space if k != knob]
        contexts = [dict(zip(others, bits)) for bits in itertools.product(*(space[k] for k in others))]
        for narrow, wide in zip(choices, choices[1:]):
            redundant = all(table.cycles({**c, knob: wide}) <= table.cycles({**c, knob: narrow}) for c in contexts)
            assert (narrow not in kept[knob]) == redundant, (knob, narrow, wide)
            dropped_somewhere |= redundant
    # Bit Fusion (scalesim, lowmem) runs 4 and 8 bits alike somewhere; Eyeriss' model has no such level here
    assert dropped_somewhere == (profile != "eyeriss")
    if profile == "scalesim":  # weights too: where the activations set the pace, every weight width costs the same
        assert any(len(kept[k]) < len(space[k]) for k in space if qmodel.knobs[k].kind == "weight")


def test_widest_per_level_keeps_weight_widths_when_asked(trained_digits_cnn, backend):
    qmodel = quantize(trained_digits_cnn)
    table = LatencyTable(qmodel, qmodel.workload((1, 8, 8)), backend)
    space = qmodel.search_space()
    kept = table.widest_per_level(space, weights=False)
    assert all(kept[k] == tuple(space[k]) for k in space if qmodel.knobs[k].kind == "weight")
