"""Differentiable precision: the cost surrogate, and learned bits under stronger and weaker penalties."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Subset

import hw_backends
from brevitas_amed.quant import LatencyTable, QuantPolicy, calibrate, layer_bits, quantize
from brevitas_amed.strategies import StrategyContext, differentiable


@pytest.fixture(scope="module")
def backend():
    return hw_backends.get("analytic", profile="scalesim")


def test_interpolation_is_exact_on_the_grid_and_linear_between():
    table = torch.tensor([[10.0, 6.0], [4.0, 2.0]])
    w_grid, a_grid = torch.tensor([2.0, 8.0]), torch.tensor([4.0, 8.0])
    assert differentiable.interpolate(table, w_grid, a_grid, torch.tensor(8.0), torch.tensor(4.0)) == 4.0
    assert differentiable.interpolate(table, w_grid, a_grid, torch.tensor(5.0), torch.tensor(8.0)) == 4.0
    assert differentiable.interpolate(table, w_grid, a_grid, torch.tensor(1.0), torch.tensor(9.0)) == 6.0
    steps = torch.tensor([[9.0], [5.0], [5.0], [1.0], [1.0]])  # e.g. bits 2, 3, 4, 5, 8
    assert differentiable.cost_levels(steps) == [0, 2, 4]


def test_cost_model_matches_the_backend_at_the_ends(branchy_qmodel, backend):
    qmodel = branchy_qmodel
    workload = qmodel.workload((1, 8, 8))
    latency = LatencyTable(qmodel, workload, backend)
    model = differentiable.CostModel(qmodel, latency, "latency")
    space = qmodel.search_space()
    for pick in (min, max):
        allocation = {k: pick(c) for k, c in space.items()}
        theta = {k: torch.tensor(float(b)) for k, b in allocation.items()}
        expected = backend.latency(workload, layer_bits(qmodel, allocation)).cycles
        assert float(model(theta)) * model.reference == pytest.approx(expected)
    theta = {k: torch.tensor(6.0, requires_grad=True) for k in space}
    model(theta).backward()
    grads = [float(t.grad) for t in theta.values() if t.grad is not None]  # None: cost flat in that knob
    assert min(grads) >= 0 and max(grads) > 0
    size = differentiable.CostModel(qmodel, latency, "size")
    assert float(size({k: torch.tensor(8.0) for k in space})) == 1.0
    with pytest.raises(ValueError, match="cost must be 'latency' or 'size', got 'energy'"):
        differentiable.CostModel(qmodel, latency, "energy")


@pytest.fixture(scope="module")
def digits_setup(trained_digits_cnn, digits_splits, backend):
    qmodel = quantize(trained_digits_cnn, QuantPolicy(weight_bits=(2, 3, 4, 8), act_bits=(2, 3, 4, 8)))
    loader = DataLoader(Subset(digits_splits.train, range(256)), batch_size=32, shuffle=True)
    calibrate(qmodel, loader, max_batches=2)
    return qmodel, loader, LatencyTable(qmodel, qmodel.workload((1, 8, 8)), backend)


def test_stronger_penalty_gives_lower_latency_and_allowed_bits(digits_setup, backend):
    qmodel, loader, latency = digits_setup
    state = {k: v.clone() for k, v in qmodel.state_dict().items()}
    bits, parameters = qmodel.get_knob_bits(), [id(p) for p in qmodel.parameters()]
    points = differentiable.front(qmodel, loader, latency, penalties=(0.0, 10.0), max_steps=8)
    strong, weak = points[0], points[-1]
    cycles = [backend.latency(latency.workload, layer_bits(qmodel, a)).cycles for a in (strong, weak)]
    assert cycles[0] < cycles[1]
    space = qmodel.search_space()
    for allocation in points:
        assert set(allocation) == set(space) and all(b in space[k] for k, b in allocation.items())
    assert qmodel.get_knob_bits() == bits
    assert [id(p) for p in qmodel.parameters()] == parameters  # no module rebuilt: shared add scales stay shared
    assert all(torch.equal(v, state[k]) for k, v in qmodel.state_dict().items())


def test_size_penalty_and_propose_respect_the_size_limit(digits_setup, trained_digits_cnn, backend):
    qmodel, loader, latency = digits_setup
    eight_bit = qmodel.weight_size_bits()
    ctx = StrategyContext(qmodel=qmodel, float_model=trained_digits_cnn, latency=latency,
                          train_loader=loader, size_limit_bits=0.6 * eight_bit)
    points = differentiable.propose(ctx, n_points=1, cost="size", max_steps=8, epochs=1)
    assert points and all(qmodel.weight_size_bits(a) <= 0.6 * eight_bit for a in points)
    with pytest.raises(ValueError, match="exceeds size_limit_bits=1 .* raise the limit"):
        differentiable.propose(StrategyContext(qmodel=qmodel, float_model=trained_digits_cnn, latency=latency,
                                               train_loader=loader, size_limit_bits=1),
                               n_points=1, max_steps=2)


@pytest.mark.parametrize("argument, message", [({"penalty": -1.0}, "penalty=-1.0: must be >= 0"),
                                               ({"ramp": 0.0}, r"ramp=0.0: must be in \(0, 1\]"),
                                               ({"lr": 0.0}, "lr=0.0: must be > 0 or None")])
def test_bad_arguments_say_the_allowed_range(digits_setup, backend, argument, message):
    qmodel, loader, latency = digits_setup
    with pytest.raises(ValueError, match=message):
        differentiable.search(qmodel, loader, latency, **argument)
