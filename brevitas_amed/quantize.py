"""Float torch model -> Brevitas model whose per-layer bit widths change at run time.

The conversion goes through Brevitas' graph quantizer (``preprocess_for_quantize`` then
``quantize``), which yields an integer-only graph FINN accepts: quantized ReLUs, requantized
residual adds, an input quantizer. Every quantizer here has

* a ``STATEFUL_CONST`` bit width: a buffer read on every forward, saved in ``state_dict``, and
  changed in place in microseconds (no rebuild);
* a ``PARAMETER_FROM_STATS`` scale: initialised from statistics (weights at first use, activations
  by :func:`calibrate`), then a trained parameter (the clipping threshold, so a bit-width change
  keeps the learned range).

Bit widths are grouped into *knobs*: one per compute layer's weights (named after the layer) and
one per activation group (``act:<module>``). Quantizers feeding the same residual add are merged
into one activation knob so integer adds stay valid. Users read and write bits per layer with
:meth:`QuantizedModel.get_bits` / :meth:`QuantizedModel.set_bits`
(``{layer: (weight_bits, act_bits)}``, act = the layer's input activation) or per knob.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator, Literal, Mapping, Sequence, Union

import torch
from torch import fx, nn

import brevitas.nn as qnn
from brevitas.core.bit_width.const import BitWidthStatefulConst
from brevitas.graph.calibrate import calibration_mode
from brevitas.graph.quantize import preprocess_for_quantize
from brevitas.graph.quantize import quantize as _brevitas_quantize
from brevitas.inject.enum import BitWidthImplType, ScalingImplType
from brevitas.quant import Int32Bias, Uint8ActPerTensorFloatMaxInit
from brevitas.quant.scaled_int import (Int8ActPerTensorFloat, Int8WeightPerChannelFloat,
                                       Int8WeightPerTensorFloat, Uint8ActPerTensorFloat)

from hw_backends.workload import Workload

MIN_BITS, MAX_BITS = 2, 8
LayerPolicy = Union[int, Literal["float", "search"]]

SUPPORTED_MODULES: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d,
    nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Flatten, nn.Identity,
)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Nodes an activation passes through unchanged in precision on its way into a compute layer.
_PASS_THROUGH_MODULES = (nn.MaxPool2d, nn.Dropout, nn.Identity, nn.Flatten)
_PASS_THROUGH_FUNCTIONS = {"flatten", "reshape", "view", "squeeze", "unsqueeze", "contiguous", "getitem"}


# --- quantizers: stock Brevitas quantizers with run-time bit widths and learned scales --------
class WeightQuantPerChannel(Int8WeightPerChannelFloat):
    bit_width_impl_type = BitWidthImplType.STATEFUL_CONST
    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS


class WeightQuantPerTensor(Int8WeightPerTensorFloat):
    bit_width_impl_type = BitWidthImplType.STATEFUL_CONST
    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS


class SignedActQuant(Int8ActPerTensorFloat):
    bit_width_impl_type = BitWidthImplType.STATEFUL_CONST


class UnsignedActQuant(Uint8ActPerTensorFloat):
    bit_width_impl_type = BitWidthImplType.STATEFUL_CONST


class Relu6ActQuant(Uint8ActPerTensorFloatMaxInit):
    bit_width_impl_type = BitWidthImplType.STATEFUL_CONST


class UnsupportedModuleError(TypeError):
    """A module in the float model has no quantized counterpart here."""


@dataclasses.dataclass(frozen=True)
class QuantPolicy:
    """Which bit widths are allowed and how the first and last compute layers are treated.

    Args:
        weight_bits: Allowed weight bit widths (each in 2..8).
        act_bits: Allowed activation bit widths (each in 2..8).
        first_layer / last_layer: An int fixes that layer's weights and input activations (and,
            for the last layer, its output) at that many bits; ``"float"`` leaves them
            unquantized; ``"search"`` makes them ordinary knobs.
        per_channel_weights: Per-output-channel weight scales (recommended below 8 bits).
        init_bits: Bit width every searchable knob starts at.
    """

    weight_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    act_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    first_layer: LayerPolicy = 8
    last_layer: LayerPolicy = 8
    per_channel_weights: bool = True
    init_bits: int = 8

    def __post_init__(self) -> None:
        for field in ("weight_bits", "act_bits"):
            values = tuple(sorted(set(int(b) for b in getattr(self, field))))
            if not values or values[0] < MIN_BITS or values[-1] > MAX_BITS:
                raise ValueError(f"QuantPolicy.{field}={getattr(self, field)!r}: give bit widths in {MIN_BITS}..{MAX_BITS}")
            object.__setattr__(self, field, values)
        for field in ("first_layer", "last_layer"):
            value = getattr(self, field)
            if value in ("float", "search"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
                raise ValueError(f"QuantPolicy.{field}={value!r}: use an int in {MIN_BITS}..{MAX_BITS}, 'float' or 'search'")
        if not MIN_BITS <= self.init_bits <= MAX_BITS:
            raise ValueError(f"QuantPolicy.init_bits={self.init_bits!r}: use an int in {MIN_BITS}..{MAX_BITS}")


@dataclasses.dataclass
class Knob:
    """One run-time bit width shared by a group of quantizers.

    Attributes:
        name: ``<layer>`` for a layer's weights, ``act:<module>`` for an activation group.
        kind: ``"weight"`` or ``"act"``.
        modules: Paths of the quantized modules whose quantizers this knob drives.
        layers: Original names of the compute layers it feeds (weights: the layer itself).
        choices: Bit widths it may take.
        fixed: The bit width a policy pinned it to, or ``None`` when searchable.
        is_float: Quantization disabled by policy.
    """

    name: str
    kind: str
    modules: list[str]
    layers: list[str]
    choices: tuple[int, ...]
    fixed: int | None = None
    is_float: bool = False
    # Paths of the bit-width modules under ``_root``. Brevitas rebuilds its quantizer modules
    # when a state_dict is loaded, so resolved modules are cached only until the next load.
    _impl_paths: list[str] = dataclasses.field(default_factory=list, repr=False)
    _root: nn.Module | None = dataclasses.field(default=None, repr=False)
    _cache: list[nn.Module] | None = dataclasses.field(default=None, repr=False)

    def impls(self) -> list[nn.Module]:
        if self._cache is None:
            self._cache = [self._root.get_submodule(p) for p in self._impl_paths]
        return self._cache

    def forget_modules(self) -> None:
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


class QuantizedModel(nn.Module):
    """A Brevitas graph model plus its bit knobs. Call it like the float model."""

    def __init__(self, graph_model: fx.GraphModule, policy: QuantPolicy, knobs: dict[str, Knob],
                 layers: list[str], layer_knobs: dict[str, tuple[str, str | None]]):
        super().__init__()
        self.model = graph_model
        self.policy = policy
        self.knobs = knobs
        self.layers = layers
        self.layer_knobs = layer_knobs
        self._shared_paths = _shared_module_paths(graph_model)
        self.register_load_state_dict_post_hook(QuantizedModel._after_load)

    @staticmethod
    def _after_load(module: "QuantizedModel", _incompatible_keys) -> None:
        # Brevitas rebuilds quantizer internals on load, which unties the scale that the inputs
        # of a residual add share (and would let training drift them apart): tie them again.
        for paths in module._shared_paths:
            target = module.model.get_submodule(paths[0])
            for path in paths[1:]:
                parent, _, attr = path.rpartition(".")
                owner = module.model.get_submodule(parent) if parent else module.model
                if getattr(owner, attr) is not target:
                    setattr(owner, attr, target)
        for knob in module.knobs.values():
            knob.forget_modules()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return getattr(out, "value", out)

    # --- knob-level interface --------------------------------------------------------------
    def search_space(self) -> dict[str, tuple[int, ...]]:
        """Searchable knobs and their allowed bit widths, in execution order."""
        return {name: knob.choices for name, knob in self.knobs.items() if knob.searchable}

    def get_knob_bits(self) -> dict[str, int | None]:
        return {name: knob.bits for name, knob in self.knobs.items()}

    def set_knob_bits(self, bits: Mapping[str, int]) -> None:
        """Set bit widths per knob name; validates everything before changing anything.

        Raises:
            ValueError: Unknown knob, a bit width outside the knob's choices, or a change to a
                knob the policy fixed.
        """
        for name, value in bits.items():
            knob = self.knobs.get(name)
            if knob is None:
                raise ValueError(f"unknown bit knob {name!r}; known knobs: {', '.join(self.knobs)}")
            self._check_value(knob, value, f"knob {name!r}")
        for name, value in bits.items():
            if self.knobs[name].searchable:
                self.knobs[name].set(int(value))

    # --- layer-level interface ---------------------------------------------------------------
    def get_bits(self) -> dict[str, tuple[int | None, int | None]]:
        """``{layer: (weight_bits, input_act_bits)}``; ``None`` means float."""
        return {layer: (self.knobs[w].bits, self.knobs[a].bits if a else None)
                for layer, (w, a) in self.layer_knobs.items()}

    def set_bits(self, allocation: Mapping[str, tuple[int | None, int | None]]) -> None:
        """Set ``{layer: (weight_bits, act_bits)}``. Layers not mentioned keep their bits.

        Raises:
            ValueError: Unknown layer, bits outside the allowed range, a change to a layer the
                policy fixed, or two layers sharing one activation knob given different bits.
        """
        knob_bits: dict[str, int] = {}
        origin: dict[str, str] = {}
        for layer, pair in allocation.items():
            if layer not in self.layer_knobs:
                raise ValueError(f"unknown layer {layer!r}; known layers: {', '.join(self.layers)}")
            try:
                w_bits, a_bits = pair
            except (TypeError, ValueError):
                raise ValueError(f"layer {layer!r}: give (weight_bits, act_bits), got {pair!r}") from None
            w_knob, a_knob = self.layer_knobs[layer]
            for knob_name, value, side in ((w_knob, w_bits, "weight"), (a_knob, a_bits, "activation")):
                if knob_name is None:
                    continue
                self._check_value(self.knobs[knob_name], value, f"layer {layer!r} {side} bits")
                if knob_name in knob_bits and knob_bits[knob_name] != value:
                    raise ValueError(
                        f"layers {origin[knob_name]!r} and {layer!r} share activation knob {knob_name!r} "
                        f"(a residual add or a common input) but got {knob_bits[knob_name]} and {value} bits")
                knob_bits[knob_name], origin[knob_name] = value, layer
        self.set_knob_bits(knob_bits)

    def set_uniform(self, weight_bits: int, act_bits: int | None = None) -> None:
        """Every searchable knob to one bit width (fixed first/last layers keep theirs)."""
        act_bits = weight_bits if act_bits is None else act_bits
        for knob in self.knobs.values():
            if knob.searchable:
                value = weight_bits if knob.kind == "weight" else act_bits
                self._check_value(knob, value, f"knob {knob.name!r}")
        for knob in self.knobs.values():
            if knob.searchable:
                knob.set(weight_bits if knob.kind == "weight" else act_bits)

    @contextlib.contextmanager
    def bits_applied(self, knob_bits: Mapping[str, int]) -> Iterator["QuantizedModel"]:
        """Temporarily set knob bits, restoring the previous ones on exit."""
        previous = {n: b for n, b in self.get_knob_bits().items() if n in knob_bits}
        self.set_knob_bits(knob_bits)
        try:
            yield self
        finally:
            self.set_knob_bits(previous)

    def weight_size_bits(self, knob_bits: Mapping[str, int] | None = None) -> int:
        """Size of the compute layers' weights in bits (float layers count 32 bits)."""
        bits = dict(self.get_knob_bits())
        bits.update(knob_bits or {})
        total = 0
        modules = dict(self.model.named_modules())
        for layer in self.layers:
            w_knob = self.layer_knobs[layer][0]
            b = bits[w_knob]
            total += modules[layer].weight.numel() * (32 if b is None else b)
        return total

    def workload(self, input_shape: Sequence[int], name: str | None = None) -> Workload:
        """Layer shapes in execution order, tied to this model's knobs."""
        from brevitas_amed.workload import build_workload

        return build_workload(self.model, input_shape, name=name, knobs=self.layer_knobs)

    def scale_parameters(self) -> list[nn.Parameter]:
        """The learned quantizer scales (give them their own optimizer group)."""
        return [p for n, p in self.named_parameters() if "scaling_impl" in n]

    def _check_value(self, knob: Knob, value, what: str) -> None:
        if knob.is_float:
            if value is not None:
                raise ValueError(f"{what}: knob {knob.name!r} is float by policy; pass None")
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what}: bit width must be an int, got {value!r}")
        if knob.fixed is not None:
            if value != knob.fixed:
                raise ValueError(f"{what}={value}: knob {knob.name!r} is fixed at {knob.fixed} bits by the first/last-layer policy")
            return
        if value not in knob.choices:
            raise ValueError(f"{what}={value} is not allowed for knob {knob.name!r}; allowed: {list(knob.choices)}")


# --- conversion ------------------------------------------------------------------------------
def check_supported(model: nn.Module) -> None:
    """Raise :class:`UnsupportedModuleError` naming the first module we cannot quantize."""
    for path, module in model.named_modules():
        if path == "" or isinstance(module, _CONTAINERS):
            continue
        if isinstance(module, SUPPORTED_MODULES):
            if isinstance(module, nn.Conv2d) and isinstance(module.padding, str):
                raise UnsupportedModuleError(f"module {path!r} (Conv2d) uses padding={module.padding!r}; use integer padding")
            continue
        if any(True for _ in module.children()):
            continue  # a user block (e.g. BasicBlock): its leaves are checked
        names = ", ".join(sorted(t.__name__ for t in SUPPORTED_MODULES))
        raise UnsupportedModuleError(f"module {path!r} of type {type(module).__name__} is not supported; supported layers: {names}")


def _maps(policy: QuantPolicy):
    weight_quant = WeightQuantPerChannel if policy.per_channel_weights else WeightQuantPerTensor
    layer_kwargs = dict(weight_quant=weight_quant, bias_quant=Int32Bias, return_quant_tensor=True)
    compute = {nn.Conv2d: (qnn.QuantConv2d, layer_kwargs), nn.Linear: (qnn.QuantLinear, layer_kwargs),
               nn.AvgPool2d: None}
    act = {nn.ReLU: (qnn.QuantReLU, dict(act_quant=UnsignedActQuant, return_quant_tensor=True)),
           nn.ReLU6: (qnn.QuantReLU, dict(act_quant=Relu6ActQuant, max_val=6.0, return_quant_tensor=True))}
    identity = {"signed": (qnn.QuantIdentity, dict(act_quant=SignedActQuant, return_quant_tensor=True)),
                "unsigned": (qnn.QuantIdentity, dict(act_quant=UnsignedActQuant, return_quant_tensor=True))}
    return identity, compute, act


def quantize(model: nn.Module, policy: QuantPolicy | None = None) -> QuantizedModel:
    """Turn a float model into a :class:`QuantizedModel` with run-time bit knobs.

    The float model is not modified. Call :func:`calibrate` before training or evaluating.

    Args:
        model: Conv/linear/BN/ReLU/ReLU6/pooling network, residual adds allowed
            (torchvision ResNets and MobileNetV2 included).
        policy: Allowed bits and first/last-layer treatment (default :class:`QuantPolicy`).

    Returns:
        The quantized model, all searchable knobs at ``policy.init_bits``.

    Raises:
        UnsupportedModuleError: A module has no quantized counterpart; names its path and type.
        ValueError: The model has no compute layer or cannot be traced.
    """
    import copy

    policy = policy or QuantPolicy()
    check_supported(model)
    float_layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not float_layers:
        raise ValueError("model has no Conv2d or Linear layer to quantize")
    try:
        graph = preprocess_for_quantize(copy.deepcopy(model), merge_bn=False, relu6_to_relu=False)
    except Exception as exc:  # torch.fx tracing errors are long; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot trace the model for quantization ({first}); avoid data-dependent control flow in forward") from exc
    identity_map, compute_map, act_map = _maps(policy)
    qgraph = _brevitas_quantize(graph, identity_map, compute_map, act_map)
    knobs, layers, layer_knobs, output_knob = _build_knobs(qgraph, policy)
    missing = set(float_layers) - set(layers)
    if missing:
        raise ValueError(f"layers {sorted(missing)} were not reached by tracing; they are not used in forward()?")
    qmodel = QuantizedModel(qgraph, policy, knobs, layers, layer_knobs)
    _apply_policy(qmodel, output_knob)
    return qmodel


def _shared_module_paths(graph: nn.Module) -> list[list[str]]:
    """Groups of paths at which one module object is registered, shallowest groups first."""
    by_id: dict[int, list[str]] = {}
    for path, module in graph.named_modules(remove_duplicate=False):
        if path:
            by_id.setdefault(id(module), []).append(path)
    groups = [paths for paths in by_id.values() if len(paths) > 1]
    return sorted(groups, key=lambda paths: min(p.count(".") for p in paths))


def _bit_width_impls(module: nn.Module, prefix: str = "") -> dict[str, nn.Module]:
    """``{path: module}`` of the run-time bit widths under ``module``."""
    return {f"{prefix}.{p}" if prefix else p: sub for p, sub in module.named_modules()
            if isinstance(sub, BitWidthStatefulConst)}


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _is_add(node: fx.Node) -> bool:
    import operator

    if node.op == "call_function":
        return node.target in (operator.add, operator.iadd, torch.add)
    return node.op == "call_method" and node.target in ("add", "add_")


def _build_knobs(qgraph: fx.GraphModule, policy: QuantPolicy):
    modules = dict(qgraph.named_modules(remove_duplicate=False))
    act_points: dict[str, dict[str, nn.Module]] = {}  # module path -> its bit-width modules
    order: list[str] = []
    layers: list[str] = []
    for node in qgraph.graph.nodes:
        if node.op != "call_module":
            continue
        module = modules[node.target]
        if isinstance(module, (qnn.QuantConv2d, qnn.QuantLinear)):
            if node.target not in layers:
                layers.append(node.target)
            continue
        impls = _bit_width_impls(module, node.target)
        if impls and node.target not in act_points:
            act_points[node.target] = impls
            order.append(node.target)

    groups = _UnionFind()
    for path in order:
        groups.find(path)
    by_impl: dict[int, str] = {}
    for path in order:  # quantizers sharing one bit-width module are one knob
        for impl in act_points[path].values():
            if id(impl) in by_impl:
                groups.union(by_impl[id(impl)], path)
            by_impl.setdefault(id(impl), path)
    for node in qgraph.graph.nodes:  # inputs of one add share one knob
        if _is_add(node):
            sources = [s for arg in node.all_input_nodes if (s := _act_source(arg, modules)) is not None]
            for s in sources[1:]:
                groups.union(sources[0], s)

    knobs: dict[str, Knob] = {}
    layer_knobs: dict[str, tuple[str, str | None]] = {}
    for layer in layers:
        knobs[layer] = Knob(layer, "weight", [layer], [layer], policy.weight_bits, _root=qgraph,
                            _impl_paths=list(_bit_width_impls(modules[layer].weight_quant, f"{layer}.weight_quant")))
    members: dict[str, list[str]] = {}
    for path in order:
        members.setdefault(groups.find(path), []).append(path)
    root_name = {root: f"act:{paths[0]}" for root, paths in members.items()}
    for root, paths in members.items():
        unique = {id(m): path for p in paths for path, m in act_points[p].items()}
        knobs[root_name[root]] = Knob(root_name[root], "act", paths, [], policy.act_bits, _root=qgraph,
                                      _impl_paths=list(unique.values()))
    node_of = {n.target: n for n in qgraph.graph.nodes if n.op == "call_module"}
    for layer in layers:
        source = _act_source(node_of[layer].args[0], modules)
        a_knob = root_name[groups.find(source)] if source is not None else None
        if a_knob is not None:
            knobs[a_knob].layers.append(layer)
        layer_knobs[layer] = (layer, a_knob)
    output_node = next(n for n in qgraph.graph.nodes if n.op == "output")
    source = _act_source(output_node.args[0], modules)
    output_knob = root_name[groups.find(source)] if source is not None else None
    ordered = {n: knobs[n] for n in _execution_order(knobs, layers, layer_knobs)}
    return ordered, layers, layer_knobs, output_knob


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
            if _bit_width_impls(module):
                return node.target
            if not isinstance(module, _PASS_THROUGH_MODULES):
                return None
        elif node.op in ("call_function", "call_method"):
            name = getattr(node.target, "__name__", str(node.target))
            if name not in _PASS_THROUGH_FUNCTIONS:
                return None
        else:
            return None
        node = node.args[0] if node.args else None
    return None


def _apply_policy(qmodel: QuantizedModel, output_knob: str | None) -> None:
    """Pin first/last layers per policy; pin requantizers that feed no compute layer.

    A quantizer that feeds no conv or linear layer (the sum of a residual add before its ReLU,
    the last ReLU before global pooling) costs nothing in the hardware models, so lowering it
    could only lose accuracy: it stays at the highest activation width. The network's output
    quantizer follows the last-layer policy.
    """
    policy = qmodel.policy
    first, last = qmodel.layers[0], qmodel.layers[-1]
    modules = dict(qmodel.model.named_modules(remove_duplicate=False))
    pinned: dict[str, LayerPolicy] = {}
    for knob in qmodel.knobs.values():
        if knob.kind == "act" and not knob.layers:
            pinned[knob.name] = max(policy.act_bits)
    if output_knob is not None:
        pinned[output_knob] = policy.last_layer if policy.last_layer != "search" else max(policy.act_bits)
    for layer, setting in ((first, policy.first_layer), (last, policy.last_layer)):
        w, a = qmodel.layer_knobs[layer]
        pinned[w] = setting
        if a is not None and set(qmodel.knobs[a].layers) <= {first, last}:
            pinned[a] = setting  # do not pin a group other layers also read
    for name, knob in qmodel.knobs.items():
        setting = pinned.get(name, "search")
        if setting == "search":
            knob.fixed = None
            knob.set(policy.init_bits if policy.init_bits in knob.choices else max(knob.choices))
        elif setting == "float":
            knob.is_float = True
            _disable(knob, modules)
        else:
            knob.fixed = int(setting)
            knob.set(int(setting))


def _disable(knob: Knob, modules: Mapping[str, nn.Module]) -> None:
    """Leave a knob's quantizers in float (a float tensor cannot be returned as a QuantTensor)."""
    for path in knob.modules:
        module = modules[path]
        for proxy_name in ("weight_quant", "bias_quant", "act_quant", "output_quant", "input_quant"):
            proxy = getattr(module, proxy_name, None)
            if proxy is not None and hasattr(proxy, "disable_quant"):
                proxy.disable_quant = True
        module.return_quant_tensor = False
    for layer in knob.layers if knob.kind == "act" else []:
        modules[layer].bias_quant.disable_quant = True  # an integer bias needs a quantized input


# --- calibration -------------------------------------------------------------------------------
def _batches(data, max_batches: int) -> Iterator[torch.Tensor]:
    for i, batch in enumerate(data):
        if i >= max_batches:
            return
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def calibrate(qmodel: QuantizedModel, data, max_batches: int = 8, train_mode: bool = True) -> None:
    """Initialise activation scales from data (weights initialise from their own statistics).

    Args:
        qmodel: The model from :func:`quantize`.
        data: Iterable of input batches or ``(inputs, targets)`` pairs (a DataLoader).
        max_batches: How many batches to average statistics over.
        train_mode: Calibrate with BatchNorm in the mode the model will next run in: ``True``
            before quantization-aware training (the default), ``False`` before eval-only use.
            BatchNorm running statistics are restored afterwards either way.

    Raises:
        ValueError: ``data`` yielded no batch.
    """
    bn_state = {n: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                for n, m in qmodel.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats}
    was_training = qmodel.training
    qmodel.train(train_mode)
    seen = 0
    with torch.no_grad(), calibration_mode(qmodel.model):
        if not train_mode:
            qmodel.model.apply(lambda m: m.eval() if isinstance(m, nn.modules.batchnorm._BatchNorm) else None)
        for x in _batches(data, max_batches):
            qmodel(x)
            seen += 1
    modules = dict(qmodel.named_modules())
    for n, (mean, var, count) in bn_state.items():
        modules[n].running_mean.copy_(mean)
        modules[n].running_var.copy_(var)
        modules[n].num_batches_tracked.copy_(count)
    qmodel.train(was_training)
    if seen == 0:
        raise ValueError("calibration data yielded no batch; pass a non-empty DataLoader")
    with torch.no_grad():  # initialise weight scales from weight statistics now, not mid-training
        was = qmodel.training
        qmodel.train(True)
        qmodel.model.apply(lambda m: m.eval() if isinstance(m, nn.modules.batchnorm._BatchNorm) else None)
        qmodel(x[:1])
        qmodel.train(was)
