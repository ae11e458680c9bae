"""Bit knobs: which quantizers share one run-time bit width, found by analysing the graph.

One knob drives each compute layer's weights (named after the layer) and one each group of
activation quantizers (``act:<module>``; ``act:<module>.input_quant`` for the input quantizer of a
lookup-table activation such as SiLU). Activation quantizers are grouped by union-find: those
sharing one bit-width module, and those whose outputs meet at a residual add or a concatenation
(an integer add or concatenation needs one scale and one bit width on all its inputs). Every tie
is recorded on the knob (:attr:`Knob.ties`) so that errors can name it.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Mapping

import torch
from torch import fx, nn

import brevitas.nn as qnn
from brevitas.core.bit_width.const import BitWidthStatefulConst

# Nodes an activation passes through unchanged in precision on its way into a compute layer.
PASS_THROUGH_MODULES = (nn.MaxPool2d, nn.Dropout, nn.Identity, nn.Flatten)
PASS_THROUGH_FUNCTIONS = {"flatten", "reshape", "view", "squeeze", "unsqueeze", "contiguous", "getitem",
                          "transpose", "permute"}
INPUT_QUANT = "input_quant"


@dataclasses.dataclass
class Knob:
    """One run-time bit width shared by a group of quantizers.

    Attributes:
        name: ``<layer>`` for a layer's weights, ``act:<module>`` for an activation group.
        kind: ``"weight"`` or ``"act"``.
        modules: Paths of the quantized modules whose quantizers this knob drives.
        layers: Original names of the compute layers it feeds (weights: the layer itself).
        choices: Bit widths it may take.
        root: The graph model the paths are relative to.
        impl_paths: Paths under ``root`` of the bit-width modules (``BitWidthStatefulConst``).
        fixed: The bit width a policy pinned it to, or ``None`` when searchable.
        is_float: Quantization disabled by policy.
        ties: Why its quantizers share one bit width (``"add 'add_3'"``, ``"cat 'cat_1'"``,
            ``"shared quantizer"``); empty for a single quantizer.
    """

    name: str
    kind: str
    modules: list[str]
    layers: list[str]
    choices: tuple[int, ...]
    root: nn.Module = dataclasses.field(repr=False, compare=False)
    impl_paths: list[str] = dataclasses.field(repr=False)
    fixed: int | None = None
    is_float: bool = False
    ties: list[str] = dataclasses.field(default_factory=list)
    # Brevitas rebuilds its quantizer modules when a state_dict is loaded, so resolved modules
    # are cached only until the next load (see forget_modules).
    _cache: list[nn.Module] | None = dataclasses.field(default=None, repr=False, compare=False)

    def impls(self) -> list[nn.Module]:
        """The bit-width modules this knob writes."""
        if self._cache is None:
            self._cache = [self.root.get_submodule(p) for p in self.impl_paths]
        return self._cache

    def forget_modules(self) -> None:
        """Drop resolved modules (call after ``load_state_dict``, which rebuilds them)."""
        self._cache = None

    @property
    def searchable(self) -> bool:
        return self.fixed is None and not self.is_float

    @property
    def bits(self) -> int | None:
        if self.is_float:
            return None
        return int(self.impls()[0].bit_width.item())

    def set(self, bits: int) -> None:
        for impl in self.impls():
            impl.bit_width.fill_(bits)


@dataclasses.dataclass
class KnobGraph:
    """The knobs of a quantized graph and how they attach to its compute layers.

    Attributes:
        knobs: ``{name: Knob}`` in execution order (each layer's activation knob, then its weights).
        layers: Compute layers in execution order.
        layer_knobs: ``{layer: (weight_knob, input_act_knob or None)}``.
        output_knob: The knob of the quantizer producing the network's output, if any.
    """

    knobs: dict[str, Knob]
    layers: list[str]
    layer_knobs: dict[str, tuple[str, str | None]]
    output_knob: str | None


class UnionFind:
    """Disjoint sets of strings with path halving."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.reasons: list[tuple[str, str]] = []  # (member, why it joined another)

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str, reason: str = "") -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
        if reason:
            self.reasons.append((a, reason))

    def reasons_of(self, root: str) -> list[str]:
        """The distinct reasons recorded for the members of ``root``'s set, in order."""
        out: list[str] = []
        for member, reason in self.reasons:
            if self.find(member) == root and reason not in out:
                out.append(reason)
        return out


def bit_width_impls(module: nn.Module, prefix: str = "") -> dict[str, nn.Module]:
    """``{path: module}`` of the run-time bit widths under ``module``."""
    return {f"{prefix}.{p}" if prefix else p: sub for p, sub in module.named_modules()
            if isinstance(sub, BitWidthStatefulConst)}


def find_knobs(qgraph: fx.GraphModule, weight_bits: tuple[int, ...], act_bits: tuple[int, ...]) -> KnobGraph:
    """Group the quantizers of a Brevitas graph model into knobs.

    Args:
        qgraph: The output of Brevitas' graph ``quantize``.
        weight_bits: Choices of every weight knob.
        act_bits: Choices of every activation knob.

    Returns:
        The knobs, every one searchable (the policy pins some afterwards).
    """
    modules = dict(qgraph.named_modules(remove_duplicate=False))
    act_points: dict[str, dict[str, nn.Module]] = {}  # quantizer point -> its bit-width modules
    layers: list[str] = []
    for node in qgraph.graph.nodes:
        if node.op != "call_module":
            continue
        module = modules[node.target]
        if isinstance(module, (qnn.QuantConv2d, qnn.QuantLinear)):
            if node.target not in layers:
                layers.append(node.target)
            continue
        impls = bit_width_impls(module, node.target)
        if impls and node.target not in act_points:
            # a lookup-table activation's input quantizer is a point of its own
            inner = f"{node.target}.{INPUT_QUANT}"
            inputs = {p: m for p, m in impls.items() if p.startswith(inner + ".")}
            if inputs:
                act_points[inner] = inputs
            act_points[node.target] = {p: m for p, m in impls.items() if p not in inputs}
    groups = _group_act_points(qgraph, modules, act_points)

    knobs: dict[str, Knob] = {}
    for layer in layers:
        knobs[layer] = Knob(layer, "weight", [layer], [layer], weight_bits, root=qgraph,
                            impl_paths=list(bit_width_impls(modules[layer].weight_quant, f"{layer}.weight_quant")))
    members: dict[str, list[str]] = {}
    for path in act_points:
        members.setdefault(groups.find(path), []).append(path)
    root_name = {root: f"act:{paths[0]}" for root, paths in members.items()}
    for root, paths in members.items():
        unique = {id(m): path for p in paths for path, m in act_points[p].items()}
        knobs[root_name[root]] = Knob(root_name[root], "act", paths, [], act_bits, root=qgraph,
                                      impl_paths=list(unique.values()), ties=groups.reasons_of(root))

    def act_knob(node) -> str | None:
        source = _act_source(node, modules)
        return root_name[groups.find(source)] if source is not None else None

    node_of = {n.target: n for n in qgraph.graph.nodes if n.op == "call_module"}
    layer_knobs: dict[str, tuple[str, str | None]] = {}
    for layer in layers:
        a_knob = act_knob(node_of[layer].args[0])
        if a_knob is not None:
            knobs[a_knob].layers.append(layer)
        layer_knobs[layer] = (layer, a_knob)
    output_node = next(n for n in qgraph.graph.nodes if n.op == "output")
    ordered = {n: knobs[n] for n in _execution_order(knobs, layers, layer_knobs)}
    return KnobGraph(ordered, layers, layer_knobs, act_knob(output_node.args[0]))


def _group_act_points(qgraph: fx.GraphModule, modules, act_points: Mapping[str, Mapping[str, nn.Module]]) -> UnionFind:
    groups = UnionFind()
    for path in act_points:
        groups.find(path)
    by_impl: dict[int, str] = {}
    for path, impls in act_points.items():  # quantizers sharing one bit-width module are one knob
        for impl in impls.values():
            if id(impl) in by_impl:
                groups.union(by_impl[id(impl)], path, "shared quantizer")
            by_impl.setdefault(id(impl), path)
    for node in qgraph.graph.nodes:  # inputs of one add or concatenation share one knob
        kind = _joining_kind(node)
        if kind is not None:
            sources = [s for arg in node.all_input_nodes if (s := _act_source(arg, modules)) is not None]
            for s in sources[1:]:
                groups.union(sources[0], s, f"{kind} {node.name!r}")
    return groups


def _joining_kind(node) -> str | None:
    """``"add"`` or ``"cat"`` for a node whose inputs must share one scale and bit width."""
    if node.op == "call_function":
        if node.target in (operator.add, operator.iadd, torch.add):
            return "add"
        return "cat" if node.target is torch.cat else None
    if node.op == "call_method" and node.target in ("add", "add_"):
        return "add"
    return None
def _execution_order(knobs: Mapping[str, Knob], layers: list[str], layer_knobs) -> list[str]:
    names: list[str] = []
    for layer in layers:
        w, a = layer_knobs[layer]
        for n in (a, w):
            if n is not None and n not in names:
                names.append(n)
    names += [n for n in knobs if n not in names]
    return names


def _is_node(value) -> bool:
    # brevitas traces with its own backport of torch.fx, whose Node is not torch.fx.Node
    return hasattr(value, "op") and hasattr(value, "all_input_nodes")


def _act_source(node, modules) -> str | None:
    """The activation quantizer that produced ``node``'s value, skipping precision-neutral ops."""
    while _is_node(node):
        if node.op == "call_module":
            module = modules[node.target]
            if bit_width_impls(module):
                return node.target
            if not isinstance(module, PASS_THROUGH_MODULES):
                return None
        elif _joining_kind(node) == "cat":
            node = node.all_input_nodes[0]  # the inputs of a concatenation are tied to one knob
            continue
        elif node.op in ("call_function", "call_method"):
            name = getattr(node.target, "__name__", str(node.target))
            if name not in PASS_THROUGH_FUNCTIONS:
                return None
        else:
            return None
        node = node.args[0] if node.args else None
    return None
