"""Differentiable mixed precision: bit widths learned by gradient under a ramped hardware penalty.

After Schaefer et al., "Edge Inference with Fully Differentiable Quantized Mixed Precision Neural
Networks" (arXiv 2206.07741): every searchable knob gets a continuous bit width
``theta_k`` trained jointly with the weights and the learned quantizer scales.

* Forward: each of the knob's quantizers reads ``round(theta_k)`` (to the nearest allowed
  choice) instead of its bit-width buffer, with a straight-through gradient, as Brevitas'
  learned bit widths (``BitWidthImplType.PARAMETER``) do. The task loss reaches ``theta_k``
  through the quantizer's step size ``threshold / (2**(b-1) - 1)`` and its clamp bounds, so a knob
  whose quantization error hurts the loss is pushed to more bits.
* Penalty: ``"latency"``: the backend's per-layer table, interpolated bilinearly in
  ``(theta_weight, theta_act)`` and summed over layers, divided by the latency at the highest
  choices. The interpolation runs through the highest choice of each cost level only (Bit Fusion
  costs 5..8 bits the same), so it has a slope everywhere and is exact at those choices.
  ``"size"``: the weights' bits, divided by their size at the highest choices. The penalty's
  weight rises linearly from 0 to ``penalty`` over the first ``ramp`` fraction of the steps (the
  paper's ramped schedule), so the network first adapts to quantization, then is pushed down.
* Result: each ``theta_k`` rounded to the nearest allowed choice. The model's weights, scales,
  bits and mode are restored afterwards; fine-tuning at the chosen bits is the job's.

A sweep of penalty strengths (:func:`front`, :func:`propose`) traces an accuracy-cost front.

Departures from the paper: no tensor-sliced precision (one bit width per knob, never per slice of
a tensor), no targeted gradient modification (the bit widths get the plain straight-through
gradient of the task loss plus the penalty), no multi-phase schedule and no learned range (the
job's learned scales are kept); and the default penalty is the accelerator's latency, where the
paper optimises memory (``cost="size"`` is the closest to it here).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Mapping, Sequence

import torch
from torch import nn

from brevitas_amed.quant import LatencyTable, QuantizedModel, side_options
from brevitas_amed.strategies import StrategyContext, check_latency_table, distinct

Cost = Literal["latency", "size"]
DEFAULT_PENALTIES = (0.03, 0.3, 3.0)


def nearest_choice(value: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
    """The allowed bit width closest to ``value`` (ties go to the smaller one)."""
    return choices[torch.argmin((choices - value.detach()).abs())]


def interpolate(table: torch.Tensor, w_grid: torch.Tensor, a_grid: torch.Tensor,
                w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of ``table[i, j]`` (cost at ``w_grid[i]``, ``a_grid[j]``) at ``(w, a)``.

    A grid of one value is constant along its axis. ``w`` and ``a`` are clamped to their grids.
    """
    (i0, i1, tw), (j0, j1, ta) = _bracket(w_grid, w), _bracket(a_grid, a)
    return ((1 - tw) * (1 - ta) * table[i0, j0] + tw * (1 - ta) * table[i1, j0]
            + (1 - tw) * ta * table[i0, j1] + tw * ta * table[i1, j1])


def _bracket(grid: torch.Tensor, value: torch.Tensor):
    if len(grid) == 1:
        return 0, 0, torch.zeros(())
    value = value.clamp(grid[0], grid[-1])
    i = int(torch.searchsorted(grid, value.detach(), right=True).clamp(1, len(grid) - 1)) - 1
    return i, i + 1, (value - grid[i]) / (grid[i + 1] - grid[i])


@dataclasses.dataclass
class _Side:
    """One side (weights or input activations) of a layer: a learned knob or a fixed value."""

    knob: str | None
    grid: torch.Tensor


def cost_levels(table: torch.Tensor) -> list[int]:
    """Rows of ``table`` that end a run of equal rows (the highest bits at each cost level).

    Hardware costs are often steps in the bit width (Bit Fusion runs 5..8 bits as 8): a grid
    through every choice would be flat, with no gradient, across each step. Through the highest
    choice of each level only, the interpolation stays exact at those choices and slopes from
    one level to the next.
    """
    return [i for i in range(len(table)) if i == len(table) - 1 or not torch.equal(table[i], table[i + 1])]


class CostModel(nn.Module):
    """The differentiable latency or size of the model as a function of the knobs' ``theta``.

    Per layer, the backend's costs on the grid of the layer's weight and activation choices,
    reduced to the highest choice of each cost level (:func:`cost_levels`) and interpolated
    bilinearly; a fixed or float side is a grid of one value.

    Args:
        qmodel: The quantized model.
        latency: ``qmodel``'s latency table (read for ``cost="latency"``; it also gives the
            layer order).
        cost: ``"latency"`` or ``"size"``. A float layer's weights count as
            :data:`~brevitas_amed.quant.FLOAT_AS_BITS` bits here: a fixed side only shifts the
            normaliser, never the gradient.

    Raises:
        ValueError: Unknown ``cost`` or a latency table of another model.
    """

    def __init__(self, qmodel: QuantizedModel, latency: LatencyTable, cost: Cost) -> None:
        super().__init__()
        if cost not in ("latency", "size"):
            raise ValueError(f"cost must be 'latency' or 'size', got {cost!r}")
        check_latency_table(qmodel, latency)
        self.cost = cost
        self.terms: list[tuple[_Side, _Side, torch.Tensor]] = []
        counts = qmodel.weight_counts()
        for layer in latency.workload.names:
            w_knob, a_knob = qmodel.layer_knobs[layer]
            w_opts, a_opts = side_options(qmodel, w_knob), side_options(qmodel, a_knob)
            if cost == "latency":
                costs = latency.pair_cycles(layer)
                table = torch.tensor([[float(costs[(w, a)]) for a in a_opts] for w in w_opts])
            else:
                table = torch.tensor([[float(counts[w_knob] * w)] * len(a_opts) for w in w_opts])
            w_keep, a_keep = cost_levels(table), cost_levels(table.T)
            searchable = qmodel.search_space()
            self.terms.append((_Side(w_knob if w_knob in searchable else None, torch.tensor(w_opts, dtype=torch.float)[w_keep]),
                               _Side(a_knob if a_knob in searchable else None, torch.tensor(a_opts, dtype=torch.float)[a_keep]),
                               table[w_keep][:, a_keep]))
        self.reference = float(sum(table[-1, -1] for _w, _a, table in self.terms))

    def forward(self, theta: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Cost at ``theta`` as a fraction of the cost at every knob's highest choice."""
        total = torch.zeros(())
        for w_side, a_side, table in self.terms:
            w = theta[w_side.knob] if w_side.knob else w_side.grid[0]
            a = theta[a_side.knob] if a_side.knob else a_side.grid[0]
            total = total + interpolate(table, w_side.grid, a_side.grid, w, a)
        return total / self.reference


class _LearnedBits:
    """Makes each searchable knob's quantizers read a learned, straight-through-rounded bit width."""

    def __init__(self, qmodel) -> None:
        space = qmodel.search_space()
        self.choices = {k: torch.tensor(c, dtype=torch.float) for k, c in space.items()}
        self.theta = {k: nn.Parameter(torch.tensor(float(qmodel.knobs[k].bits))) for k in space}
        self._handles = [impl.register_forward_hook(self._hook(k)) for k in space for impl in qmodel.knobs[k].impls()]

    def _hook(self, knob: str):
        def replace_bit_width(_module, _inputs, output):
            theta = self.theta[knob]  # on the CPU with the cost tables; the quantizer's device may differ
            return (theta + (nearest_choice(theta, self.choices[knob]) - theta).detach()).to(output.device)
        return replace_bit_width

    def clamp_(self) -> None:
        with torch.no_grad():
            for k, theta in self.theta.items():
                theta.clamp_(self.choices[k][0], self.choices[k][-1])

    def rounded(self) -> dict[str, int]:
        return {k: int(nearest_choice(theta, self.choices[k])) for k, theta in self.theta.items()}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def search(qmodel: QuantizedModel, train_loader, latency: LatencyTable, penalty: float = 0.3,
           cost: Cost = "latency", epochs: int = 2, lr: float | None = None, weight_lr: float = 1e-4,
           ramp: float = 0.5, max_steps: int | None = None, seed: int = 0) -> dict[str, int]:
    """Learn bit widths by gradient under a ramped cost penalty and round them to allowed choices.

    Args:
        qmodel: A calibrated :class:`~brevitas_amed.quant.QuantizedModel`; its weights,
            scales, bits and mode are restored before returning.
        train_loader: Batches of ``(inputs, targets)`` for a classification loss.
        latency: ``qmodel``'s latency table (read for ``cost="latency"``).
        penalty: Final weight of the normalised cost in the loss (``>= 0``).
        cost: ``"latency"`` (backend cycles) or ``"size"`` (weight bits).
        epochs: Passes over ``train_loader``.
        lr: Adam learning rate of the bit widths (about bits per step); ``None``: twice the
            widest knob's range over the number of steps, so a bit width can cross its range.
        weight_lr: Adam learning rate of the weights and scales (0 freezes them).
        ramp: Fraction of the steps over which the penalty weight rises from 0 to ``penalty``.
        max_steps: Stop after this many steps (``None``: all epochs).
        seed: Seeds the loader's shuffling; the global RNG state is left unchanged.

    Returns:
        ``{knob: bits}`` for every searchable knob, each bit width among the knob's choices.

    Raises:
        ValueError: An argument out of range, no searchable knob, an empty loader, or a latency
            table of another model.
    """
    _check_arguments(qmodel, penalty, epochs, lr, weight_lr, ramp)
    cost_model = CostModel(qmodel, latency, cost)
    saved_state, was_training = {k: v.clone() for k, v in qmodel.state_dict().items()}, qmodel.training
    bits = _LearnedBits(qmodel)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            _train(qmodel, bits, cost_model, train_loader, penalty, epochs, lr, weight_lr, ramp, max_steps)
        return bits.rounded()
    finally:
        bits.remove()
        _restore(qmodel, saved_state)
        qmodel.train(was_training)


def _restore(qmodel, saved: Mapping[str, torch.Tensor]) -> None:
    """Copy saved values back in place.

    Not ``load_state_dict``: Brevitas rebuilds quantizer internals on load, so the caller's
    optimizer would hold stale parameter objects, and the scale the two inputs of a residual add
    share comes back as two parameters unless re-tied (training then drifts them apart and the
    integer add fails with "Scaling factors are different").
    """
    with torch.no_grad():
        for name, tensor in qmodel.state_dict().items():
            tensor.copy_(saved[name])


def _check_arguments(qmodel, penalty, epochs, lr, weight_lr, ramp) -> None:
    if not qmodel.search_space():
        raise ValueError("the model has no searchable knob; set QuantPolicy weight_bits/act_bits or "
                         "first_layer/last_layer='search'")
    for name, value, ok, wanted in (("penalty", penalty, penalty >= 0, ">= 0"), ("epochs", epochs, epochs >= 1, ">= 1"),
                                    ("lr", lr, lr is None or lr > 0, "> 0 or None"), ("weight_lr", weight_lr, weight_lr >= 0, ">= 0"),
                                    ("ramp", ramp, 0 < ramp <= 1, "in (0, 1]")):
        if not ok:
            raise ValueError(f"{name}={value!r}: must be {wanted}")


def _train(qmodel, bits: _LearnedBits, cost_model: CostModel, loader, penalty, epochs, lr, weight_lr, ramp,
           max_steps) -> None:
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError("train_loader yielded no batch; pass a non-empty DataLoader")
    total = min(epochs * steps_per_epoch, max_steps or epochs * steps_per_epoch)
    if lr is None:
        lr = 2 * max(float(c[-1] - c[0]) for c in bits.choices.values()) / total
    groups = [{"params": list(bits.theta.values()), "lr": lr}]
    if weight_lr > 0:
        groups.append({"params": [p for p in qmodel.parameters() if p.requires_grad], "lr": weight_lr})
    optimizer = torch.optim.Adam(groups)
    qmodel.train()
    step = 0
    while step < total:
        for inputs, targets in loader:
            weight = penalty * min(1.0, (step + 1) / (ramp * total))
            loss = nn.functional.cross_entropy(qmodel(inputs), targets) + weight * cost_model(bits.theta)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bits.clamp_()
            step += 1
            if step >= total:
                return


def front(qmodel: QuantizedModel, train_loader, latency: LatencyTable,
          penalties: Sequence[float] = DEFAULT_PENALTIES, **options) -> list[dict[str, int]]:
    """:func:`search` at each penalty strength, distinct results, strongest penalty first.

    Args:
        qmodel, train_loader, latency: As for :func:`search`.
        penalties: Penalty strengths to sweep.
        **options: Passed to :func:`search` (``cost``, ``epochs``, ``lr``, ...).

    Returns:
        Distinct ``{knob: bits}`` allocations, from the strongest penalty (cheapest) down.

    Raises:
        ValueError: No penalty given, or as for :func:`search`.
    """
    if not penalties:
        raise ValueError("give at least one penalty strength")
    return distinct(search(qmodel, train_loader, latency, penalty=p, **options)
                    for p in sorted(penalties, reverse=True))


def propose(ctx: StrategyContext, n_points: int = 3, **options) -> list[dict[str, int]]:
    """Differentiable precision's front for the job: ``n_points`` penalties, log-spaced.

    The penalties run from 0.03 to 3 (``DEFAULT_PENALTIES`` for 3 points), each the part of the
    cross-entropy that the whole latency (or size) at the highest bits is worth. The penalty is
    soft, so allocations over ``ctx.size_limit_bits`` are dropped from the result.

    Args:
        ctx: The strategy context (``train_loader`` required).
        n_points: Number of penalty strengths (at least 1).
        **options: Passed to :func:`search` (``cost``, ``epochs``, ``lr``, ...).

    Returns:
        Distinct ``{knob: bits}`` allocations within the size limit, cheapest first.

    Raises:
        ValueError: ``n_points < 1``, every allocation over the size limit, or as for :func:`search`.
    """
    if n_points < 1:
        raise ValueError(f"n_points must be at least 1, got {n_points}")
    penalties = torch.logspace(-1.5, 0.5, n_points).tolist() if n_points > 1 else [0.3]
    options.setdefault("seed", ctx.seed)
    points = front(ctx.qmodel, ctx.train_loader, ctx.latency, penalties, **options)
    if ctx.size_limit_bits is None:
        return points
    fitting = [a for a in points if ctx.qmodel.weight_size_bits(a) <= ctx.size_limit_bits]
    if not fitting:
        smallest = min(ctx.qmodel.weight_size_bits(a) for a in points)
        raise ValueError(f"every learned allocation exceeds size_limit_bits={ctx.size_limit_bits:g} (smallest "
                         f"{smallest} bits); pass cost='size' or larger penalties, or raise the limit")
    return fitting


__all__ = ["CostModel", "DEFAULT_PENALTIES", "cost_levels", "front", "interpolate", "nearest_choice", "propose", "search"]
