"""The quantized model: a Brevitas graph model plus its bit knobs, and the owner of model size."""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import torch
from torch import fx, nn

from brevitas_amed.quant.knobs import Knob
from brevitas_amed.quant.policy import QuantPolicy
from brevitas_amed.quant.workload import build_workload
from hw_backends.workload import Workload

FLOAT_WEIGHT_BITS = 32


class QuantizedModel(nn.Module):
    """A Brevitas graph model plus its bit knobs. Call it like the float model.

    Users read and write bits per layer with :meth:`get_bits` / :meth:`set_bits`
    (``{layer: (weight_bits, act_bits)}``, act = the layer's input activation) or per knob with
    :meth:`get_knob_bits` / :meth:`set_knob_bits`.

    Args:
        graph_model: The Brevitas graph-quantized model.
        policy: The policy it was quantized with.
        knobs: ``{name: Knob}`` in execution order.
        layers: Compute layers in execution order.
        layer_knobs: ``{layer: (weight_knob, input_act_knob or None)}``.
    """

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

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, and the model stays on its device.

        Brevitas rebuilds each quantizer's modules when a state is loaded
        (``brevitas.config.REINIT_ON_STATE_DICT_LOAD``), and it builds them on the CPU: on a GPU the
        learned activation scales would land on the CPU while the weights stay on the GPU, and the
        next forward pass fails. They are moved back to the device the model was on."""
        place = next(itertools.chain(self.parameters(), self.buffers()), None)
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        if place is not None:
            self.to(place.device)
        return result

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
        """``{knob: bits}`` for every knob; ``None`` means float."""
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
                    ties = ", ".join(self.knobs[knob_name].ties) or "a common input"
                    raise ValueError(
                        f"layers {origin[knob_name]!r} and {layer!r} share activation knob {knob_name!r} "
                        f"(tied by: {ties}) but got {knob_bits[knob_name]} and {value} bits")
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

    # --- size and shapes ---------------------------------------------------------------------------
    def weight_counts(self) -> dict[str, int]:
        """``{weight_knob: number of weights}`` of the compute layers, in execution order."""
        return {self.layer_knobs[layer][0]: self.model.get_submodule(layer).weight.numel() for layer in self.layers}

    def weight_size_bits(self, knob_bits: Mapping[str, int] | None = None) -> int:
        """Size of the compute layers' weights in bits (float layers count 32 bits).

        Args:
            knob_bits: Bits of some knobs; the others count at their current bits.
        """
        bits = dict(self.get_knob_bits())
        bits.update(knob_bits or {})
        return sum(count * (FLOAT_WEIGHT_BITS if bits[knob] is None else bits[knob])
                   for knob, count in self.weight_counts().items())

    def float_size_bits(self) -> int:
        """Size of the compute layers' weights in float (32 bits each)."""
        return FLOAT_WEIGHT_BITS * sum(self.weight_counts().values())

    def workload(self, input_shape: Sequence[int], name: str | None = None) -> Workload:
        """Layer shapes in execution order, tied to this model's knobs."""
        return build_workload(self.model, input_shape, name=name, knobs=self.layer_knobs)

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


def _shared_module_paths(graph: nn.Module) -> list[list[str]]:
    """Groups of paths at which one module object is registered, shallowest groups first."""
    by_id: dict[int, list[str]] = {}
    for path, module in graph.named_modules(remove_duplicate=False):
        if path:
            by_id.setdefault(id(module), []).append(path)
    groups = [paths for paths in by_id.values() if len(paths) > 1]
    return sorted(groups, key=lambda paths: min(p.count(".") for p in paths))
