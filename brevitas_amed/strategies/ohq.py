"""OHQ-style mixed precision: sensitivity without training, bits by integer linear programming.

After Huang et al., "Hardware-aware On-chip Mixed-precision Quantization" (arXiv 2309.01945):

1. :func:`measure_sensitivity`: for each searchable knob and each of its bit widths, quantize
   *only that knob's quantizers* (:func:`~brevitas_amed.quant.quantize_only`: every other
   quantizer in the model disabled, i.e. float, fixed first/last layers and biases included) and
   measure how far the output moves from the float
   model's on a few calibration batches: the mean KL divergence of the softmax outputs (or the
   MSE of the logits). No training, one forward per (knob, bits, batch).
2. :func:`solve`: the allocation minimising total sensitivity under a latency budget taken from
   the hardware backend's per-layer costs (a :class:`~brevitas_amed.quant.LatencyTable`), and an optional weight-size limit, as a mixed-integer
   program solved by HiGHS (:func:`scipy.optimize.milp`).
3. :func:`front`: a sweep of budgets from the fastest feasible allocation to the least sensitive
   one traces an accuracy-latency front.

The integer program is exact, not a surrogate. A layer's latency depends on both its weight knob
and its input-activation knob, and one activation knob may feed several layers, so latency is
not a sum over knobs. Binary variables ``x[k, b]`` (knob ``k`` at ``b`` bits, one per knob) are
linked to per-layer pair variables ``z[l, w, a]`` by ``sum_a z[l, w, a] = x[wk(l), w]`` and
``sum_w z[l, w, a] = x[ak(l), a]``. With one-hot ``x`` these marginals leave a single feasible
``z`` per layer, the indicator of the pair actually chosen, so ``z`` may stay continuous and
``sum c[l, w, a] z[l, w, a]`` equals the backend's latency exactly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Mapping, Sequence

import numpy as np
import torch
from scipy import optimize, sparse
from torch import nn

from brevitas_amed.quant import LatencyTable, QuantizedModel, input_batches, quantize_only, side_options
from brevitas_amed.strategies import StrategyContext, check_latency_table, distinct

Sensitivity = dict[str, dict[int, float]]


# --- sensitivity ---------------------------------------------------------------------------------
def divergence(reference: torch.Tensor, output: torch.Tensor, metric: str) -> float:
    """Mean per-sample divergence of ``output`` from ``reference`` logits (``"kl"`` or ``"mse"``)."""
    if metric == "kl":
        return float(nn.functional.kl_div(output.log_softmax(-1), reference.log_softmax(-1),
                                          reduction="batchmean", log_target=True))
    return float(nn.functional.mse_loss(output, reference))


def measure_sensitivity(qmodel: QuantizedModel, float_model: nn.Module, batches: Sequence[torch.Tensor],
                        metric: Literal["kl", "mse"] = "kl") -> Sensitivity:
    """Output divergence from the float model with only one knob quantized, per knob and bits.

    Both models run in eval mode; their modes and ``qmodel``'s bits are restored afterwards.

    Args:
        qmodel: A calibrated :class:`~brevitas_amed.quant.QuantizedModel`.
        float_model: The float model ``qmodel`` was made from.
        batches: Input tensors (a few calibration batches).
        metric: ``"kl"``: KL(float softmax || quantized softmax) per sample; ``"mse"``: mean
            squared difference of the logits.

    Returns:
        ``{knob: {bits: divergence}}`` for every searchable knob and every allowed bit width,
        averaged over the batches.

    Raises:
        ValueError: No batch, an unknown metric, or a model with no searchable knob.
    """
    if metric not in ("kl", "mse"):
        raise ValueError(f"metric must be 'kl' or 'mse', got {metric!r}")
    if not batches:
        raise ValueError("measure_sensitivity needs at least one input batch")
    space = qmodel.search_space()
    if not space:
        raise ValueError("the model has no searchable knob; set QuantPolicy weight_bits/act_bits or "
                         "first_layer/last_layer='search'")
    modes = qmodel.training, float_model.training
    qmodel.eval()
    float_model.eval()
    try:
        with torch.no_grad():
            references = [float_model(x) for x in batches]
            previous = {name: qmodel.knobs[name].bits for name in space}
            try:
                return {name: _knob_sensitivity(qmodel, name, choices, batches, references, metric)
                        for name, choices in space.items()}
            finally:
                qmodel.set_knob_bits(previous)
    finally:
        qmodel.train(modes[0])
        float_model.train(modes[1])


def _knob_sensitivity(qmodel, name: str, choices: Sequence[int], batches, references, metric) -> dict[int, float]:
    result = {}
    with quantize_only(qmodel, name):
        for bits in choices:
            qmodel.knobs[name].set(bits)
            values = [divergence(ref, qmodel(x), metric) for x, ref in zip(batches, references)]
            result[int(bits)] = sum(values) / len(values)
    return result


# --- integer program -----------------------------------------------------------------------------
@dataclasses.dataclass
class BitProgram:
    """The allocation problem of one model on one backend, built once and solved many times.

    Attributes:
        variables: ``(knob, bits)`` of each binary variable ``x``, in column order.
        latency: Cost in cycles of every column (0 for ``x``, the layer cost for ``z``).
        size: Weight bits of every column (``numel * bits`` for weight-knob ``x``).
        size_offset: Weight bits of the layers whose weight knob is fixed or float.
        layers: Per layer ``(weight side, act side, {(w, a): column of z})``; a side is the
            searchable knob's name or the fixed bit width.
        equalities: Sparse matrix of the one-hot and marginal constraints (right side ``rhs``).
    """

    variables: list[tuple[str, int]]
    latency: np.ndarray
    size: np.ndarray
    size_offset: int
    layers: list[tuple[str | int, str | int, dict[tuple[int, int], int]]]
    equalities: sparse.csr_array
    rhs: np.ndarray

    @classmethod
    def build(cls, qmodel: QuantizedModel, latency: LatencyTable) -> "BitProgram":
        """Columns and constraints from ``qmodel``'s knobs and the backend's per-layer costs.

        Args:
            qmodel: The quantized model (its knobs, choices, fixed bits and weight counts).
            latency: ``qmodel``'s latency table.

        Raises:
            ValueError: If ``latency`` was built for another model.
        """
        check_latency_table(qmodel, latency)
        space = qmodel.search_space()
        counts = qmodel.weight_counts()
        variables = [(knob, b) for knob, choices in space.items() for b in choices]
        column = {v: i for i, v in enumerate(variables)}
        rows: list[dict[int, float]] = [{column[(k, b)]: 1.0 for b in choices} for k, choices in space.items()]
        rhs = [1.0] * len(space)
        latency_column = [0.0] * len(variables)
        size = [0.0] * len(variables)
        size_offset = qmodel.weight_size_bits() - sum(counts[k] * qmodel.knobs[k].bits for k in counts if k in space)
        layers = []
        for layer in latency.workload.layers:
            w_knob, a_knob = qmodel.layer_knobs[layer.name]
            for b in space.get(w_knob, ()):
                size[column[(w_knob, b)]] = float(counts[w_knob] * b)
            pairs = {}
            for pair, cycles in latency.pair_cycles(layer.name).items():
                pairs[pair] = len(latency_column)
                latency_column.append(float(cycles))
                size.append(0.0)
            layers.append((w_knob if w_knob in space else side_options(qmodel, w_knob)[0],
                           a_knob if a_knob in space else side_options(qmodel, a_knob)[0], pairs))
            rows.append({i: 1.0 for i in pairs.values()})
            rhs.append(1.0)
            for knob, side in ((w_knob, 0), (a_knob, 1)):
                for b in space.get(knob, ()):
                    row = {i: 1.0 for pair, i in pairs.items() if pair[side] == b}
                    row[column[(knob, b)]] = -1.0
                    rows.append(row)
                    rhs.append(0.0)
        matrix = sparse.lil_array((len(rows), len(latency_column)))
        for r, row in enumerate(rows):
            for c, value in row.items():
                matrix[r, c] = value
        return cls(variables, np.array(latency_column), np.array(size), size_offset, layers, matrix.tocsr(),
                   np.array(rhs))

    def solve(self, costs: Mapping[tuple[str, int], float], latency_budget: float | None = None,
              size_limit_bits: float | None = None) -> dict[str, int] | None:
        """The allocation minimising ``sum costs[(knob, bits)]`` under the limits.

        Args:
            costs: Objective coefficient of each ``(knob, bits)`` variable.
            latency_budget: Most cycles allowed, or ``None``.
            size_limit_bits: Most weight bits allowed, or ``None``.

        Returns:
            ``{knob: bits}``, or ``None`` when no allocation meets the limits.
        """
        objective = np.zeros(len(self.latency))
        objective[:len(self.variables)] = [costs[v] for v in self.variables]
        return self._solve(objective, latency_budget, size_limit_bits)

    def fastest(self, size_limit_bits: float | None = None) -> dict[str, int] | None:
        """The allocation with the fewest cycles within the size limit (``None``: none fits)."""
        return self._solve(self.latency, None, size_limit_bits)

    def cycles(self, allocation: Mapping[str, int]) -> int:
        """Latency the program assigns to ``allocation``: the backend's, summed over layers."""
        return int(sum(self.latency[pairs[self._pair(w, a, allocation)]] for w, a, pairs in self.layers))

    def size_bits(self, allocation: Mapping[str, int]) -> int:
        """Weight bits the program assigns to ``allocation``."""
        return int(sum(self.size[i] for i, v in enumerate(self.variables) if allocation[v[0]] == v[1])) + self.size_offset

    @staticmethod
    def _pair(w_side, a_side, allocation: Mapping[str, int]) -> tuple[int, int]:
        # a side is a knob name (searchable) or its one fixed bit width
        return tuple(allocation[s] if isinstance(s, str) else s for s in (w_side, a_side))

    def _solve(self, objective: np.ndarray, latency_budget, size_limit_bits) -> dict[str, int] | None:
        n_x = len(self.variables)
        constraints = [optimize.LinearConstraint(self.equalities, self.rhs, self.rhs)]
        # costs are integers: a half-unit margin makes float tolerances unable to admit a
        # solution one cycle or bit over the limit
        if latency_budget is not None:
            constraints.append(optimize.LinearConstraint(self.latency[None, :], -np.inf,
                                                         math.floor(latency_budget) + 0.5))
        if size_limit_bits is not None:
            constraints.append(optimize.LinearConstraint(self.size[None, :], -np.inf,
                                                         math.floor(size_limit_bits) - self.size_offset + 0.5))
        integrality = np.zeros(len(self.latency))
        integrality[:n_x] = 1
        result = optimize.milp(objective, constraints=constraints, integrality=integrality,
                               bounds=optimize.Bounds(0, 1), options={"mip_rel_gap": 0.0})
        if result.status == 2:
            return None
        if result.status != 0:
            raise RuntimeError(f"the integer program solver stopped without a solution: {result.message}")
        return {k: b for (k, b), value in zip(self.variables, result.x[:n_x]) if value > 0.5}


def _check_sensitivity(sensitivity: Mapping[str, Mapping[int, float]], variables) -> dict[tuple[str, int], float]:
    costs = {}
    for knob, bits in variables:
        try:
            value = float(sensitivity[knob][bits])
        except KeyError:
            raise ValueError(f"sensitivity has no value for knob {knob!r} at {bits} bits; measure it "
                             "with measure_sensitivity on this model") from None
        if not math.isfinite(value):
            raise ValueError(f"sensitivity of knob {knob!r} at {bits} bits is {value}; it must be finite")
        costs[(knob, bits)] = value
    return costs


def _infeasible(program: BitProgram, latency_budget, size_limit_bits) -> ValueError:
    fastest = program.fastest(size_limit_bits)
    if fastest is None:
        smallest = program.solve({v: float(program.size[i]) for i, v in enumerate(program.variables)})
        return ValueError(f"no allocation fits size_limit_bits={size_limit_bits:g}: the smallest weighs "
                          f"{program.size_bits(smallest)} bits; raise the size limit")
    return ValueError(f"no allocation meets latency_budget={latency_budget:g} cycles"
                      + (f" within size_limit_bits={size_limit_bits:g}" if size_limit_bits is not None else "")
                      + f": the fastest takes {program.cycles(fastest)} cycles; raise the budget")


def solve(sensitivity: Mapping[str, Mapping[int, float]], qmodel: QuantizedModel, latency: LatencyTable,
          latency_budget: float | None = None, size_limit_bits: float | None = None) -> dict[str, int]:
    """The least sensitive allocation within a latency budget and a size limit.

    Args:
        sensitivity: ``{knob: {bits: value}}`` from :func:`measure_sensitivity`, covering every
            searchable knob and choice.
        qmodel: The quantized model (its knobs, choices, fixed bits and weight counts).
        latency: ``qmodel``'s latency table (the backend's per-layer costs).
        latency_budget: Most cycles allowed (``None``: no latency limit).
        size_limit_bits: Most weight bits allowed (``None``: no size limit).

    Returns:
        ``{knob: bits}`` for every searchable knob.

    Raises:
        ValueError: Missing or non-finite sensitivity, a latency table of another model, or no
            allocation within the limits (the message gives the fastest or smallest possible).
    """
    program = BitProgram.build(qmodel, latency)
    allocation = program.solve(_check_sensitivity(sensitivity, program.variables), latency_budget, size_limit_bits)
    if allocation is None:
        raise _infeasible(program, latency_budget, size_limit_bits)
    return allocation


def front(sensitivity: Mapping[str, Mapping[int, float]], qmodel: QuantizedModel, latency: LatencyTable,
          n_points: int = 5, size_limit_bits: float | None = None) -> list[dict[str, int]]:
    """Optimal allocations at ``n_points`` latency budgets spread evenly from fastest to least sensitive.

    Args:
        sensitivity, qmodel, latency, size_limit_bits: As for :func:`solve`.
        n_points: Number of budgets (at least 2); equal solutions are returned once.

    Returns:
        Distinct ``{knob: bits}`` allocations, fastest first.

    Raises:
        ValueError: ``n_points < 2``, bad sensitivity, or nothing fits ``size_limit_bits``.
    """
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2 (the two ends of the front), got {n_points}")
    program = BitProgram.build(qmodel, latency)
    costs = _check_sensitivity(sensitivity, program.variables)
    fastest = program.fastest(size_limit_bits)
    if fastest is None:
        raise _infeasible(program, None, size_limit_bits)
    low = program.cycles(fastest)
    high = program.cycles(program.solve(costs, None, size_limit_bits))
    budgets = np.linspace(low, high, n_points)
    return distinct(program.solve(costs, budget, size_limit_bits) for budget in budgets)


def propose(ctx: StrategyContext, n_points: int = 5, metric: Literal["kl", "mse"] = "kl") -> list[dict[str, int]]:
    """OHQ's front for the job: sensitivity on ``ctx.calib_batches`` batches, then :func:`front`.

    Args:
        ctx: The strategy context (``float_model`` and ``train_loader`` are required).
        n_points: Latency budgets swept.
        metric: Divergence measure (see :func:`measure_sensitivity`).

    Returns:
        Distinct ``{knob: bits}`` allocations, fastest first.

    Raises:
        ValueError: No calibration batch, or nothing fits ``ctx.size_limit_bits``.
    """
    batches = list(input_batches(ctx.train_loader, ctx.calib_batches))
    sensitivity = measure_sensitivity(ctx.qmodel, ctx.float_model, batches, metric)
    return front(sensitivity, ctx.qmodel, ctx.latency, n_points, ctx.size_limit_bits)


__all__ = ["BitProgram", "Sensitivity", "divergence", "front", "measure_sensitivity", "propose", "solve"]
