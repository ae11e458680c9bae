"""OHQ: sensitivity by quantizing one knob at a time, and the integer program against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import hw_backends
from brevitas_amed.quant import LatencyTable, QuantPolicy, calibrate, layer_bits, quantize
from brevitas_amed.strategies import StrategyContext, ohq


@pytest.fixture(scope="module")
def backend():
    return hw_backends.get("analytic", profile="eyeriss")


@pytest.fixture(scope="module")
def branchy(branchy_qmodel, backend):
    """The shared-knob model, its workload and latency table, random sensitivities and every
    allocation brute-forced."""
    qmodel = branchy_qmodel
    workload = qmodel.workload((1, 8, 8))
    latency = LatencyTable(qmodel, workload, backend)
    space = qmodel.search_space()
    rng = np.random.default_rng(0)
    sensitivity = {k: {b: float(rng.exponential() / b) for b in choices} for k, choices in space.items()}
    table = backend.layer_table(workload, (2, 4, 8), (4, 8))
    numel = {layer: layer_obj.weight_count for layer_obj in workload.layers for layer in [layer_obj.name]}
    allocations, objective, cycles, size = [], [], [], []
    for values in itertools.product(*space.values()):
        allocation = dict(zip(space, values))
        bits = {layer: (allocation[w], allocation[a]) for layer, (w, a) in qmodel.layer_knobs.items()}
        allocations.append(allocation)
        objective.append(sum(sensitivity[k][b] for k, b in allocation.items()))
        cycles.append(sum(table[layer][pair].cycles for layer, pair in bits.items()))
        size.append(sum(numel[layer] * pair[0] for layer, pair in bits.items()))
    return qmodel, workload, latency, sensitivity, allocations, np.array(objective), np.array(cycles), np.array(size)


def test_program_latency_equals_backend_latency(branchy, backend):
    qmodel, workload, latency, _sens, allocations, _obj, cycles, size = branchy
    program = ohq.BitProgram.build(qmodel, latency)
    for i in np.random.default_rng(1).choice(len(allocations), 50, replace=False):
        assert program.cycles(allocations[i]) == backend.latency(workload, layer_bits(qmodel, allocations[i])).cycles == cycles[i]
        assert program.size_bits(allocations[i]) == size[i]


@pytest.mark.parametrize("quantile, size_quantile", [(0.0, None), (0.05, None), (0.3, 0.5), (0.7, 0.2), (1.0, None)])
def test_ilp_matches_brute_force(branchy, backend, quantile, size_quantile):
    qmodel, workload, latency, sensitivity, _allocs, objective, cycles, size = branchy
    budget = float(np.quantile(cycles, quantile))
    limit = None if size_quantile is None else float(np.quantile(size, size_quantile))
    feasible = (cycles <= budget) & (size <= (np.inf if limit is None else limit))
    allocation = ohq.solve(sensitivity, qmodel, latency, latency_budget=budget, size_limit_bits=limit)
    assert backend.latency(workload, layer_bits(qmodel, allocation)).cycles <= budget
    if limit is not None:
        assert qmodel.weight_size_bits(allocation) <= limit
    value = sum(sensitivity[k][b] for k, b in allocation.items())
    assert value == pytest.approx(objective[feasible].min(), rel=1e-9, abs=1e-12)


def test_infeasible_limits_say_what_to_change(branchy, backend):
    qmodel, _workload, latency, sensitivity, _allocs, _obj, cycles, size = branchy
    with pytest.raises(ValueError, match=f"fastest takes {cycles.min()} cycles; raise the budget"):
        ohq.solve(sensitivity, qmodel, latency, latency_budget=cycles.min() - 1)
    with pytest.raises(ValueError, match=f"smallest weighs {size.min()} bits; raise the size limit"):
        ohq.solve(sensitivity, qmodel, latency, size_limit_bits=size.min() - 1)


def test_missing_sensitivity_is_named(branchy, backend):
    qmodel, _workload, latency, sensitivity, *_ = branchy
    partial = {k: v for k, v in sensitivity.items() if k != "a2"}
    with pytest.raises(ValueError, match="no value for knob 'a2'"):
        ohq.solve(partial, qmodel, latency)


def test_latency_table_of_another_model_is_refused(branchy, digits_ohq):
    qmodel, _workload, latency, sensitivity, *_ = branchy
    with pytest.raises(ValueError, match="latency table was built for another model"):
        ohq.solve(sensitivity, digits_ohq[0], latency)


def test_front_runs_fastest_to_least_sensitive(branchy, backend):
    qmodel, workload, latency, sensitivity, _allocs, objective, cycles, _size = branchy
    points = ohq.front(sensitivity, qmodel, latency, n_points=5)
    lat = [backend.latency(workload, layer_bits(qmodel, a)).cycles for a in points]
    obj = [sum(sensitivity[k][b] for k, b in a.items()) for a in points]
    assert lat[0] == cycles.min() and obj[-1] == pytest.approx(objective.min())
    assert lat == sorted(lat) and obj == sorted(obj, reverse=True)
    assert len({tuple(sorted(a.items())) for a in points}) == len(points) >= 3


@pytest.fixture(scope="module")
def digits_ohq(trained_digits_cnn, digits_splits):
    policy = QuantPolicy(weight_bits=(2, 4, 8), act_bits=(2, 4, 8))
    qmodel = quantize(trained_digits_cnn, policy)
    loader = DataLoader(digits_splits.train, batch_size=48)
    calibrate(qmodel, loader, max_batches=2, train_mode=False)
    return qmodel.eval(), [next(iter(loader))[0]]


def test_sensitivity_falls_with_bits_and_leaves_model_unchanged(digits_ohq, trained_digits_cnn):
    qmodel, batches = digits_ohq
    with torch.no_grad():
        before = qmodel(batches[0])
    sensitivity = ohq.measure_sensitivity(qmodel, trained_digits_cnn, batches)
    assert set(sensitivity) == set(qmodel.search_space())
    for knob, values in sensitivity.items():
        assert values[2] > values[4] > values[8] >= 0, knob
    with torch.no_grad():
        assert torch.equal(qmodel(batches[0]), before)


def test_propose_gives_a_front_of_allowed_bits(digits_ohq, trained_digits_cnn, digits_splits, backend):
    qmodel, _batches = digits_ohq
    ctx = StrategyContext(qmodel=qmodel, float_model=trained_digits_cnn,
                          latency=LatencyTable(qmodel, qmodel.workload((1, 8, 8)), backend), train_loader=DataLoader(digits_splits.train, batch_size=48),
                          calib_batches=1)
    points = ohq.propose(ctx, n_points=4)
    assert 2 <= len(points) <= 4
    space = qmodel.search_space()
    for allocation in points:
        assert set(allocation) == set(space) and all(b in space[k] for k, b in allocation.items())
