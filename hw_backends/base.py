"""The interface every latency backend implements, and the per-layer memo in front of it."""

from __future__ import annotations

import abc
import dataclasses
import itertools
from pathlib import Path
from typing import ClassVar, Iterable, Mapping

from hw_backends.precision import SimSpec, check_bits, simulation_job
from hw_backends.profile import Profile, load_profile
from hw_backends.report import LatencyReport, LayerLatency
from hw_backends.workload import Layer, Workload

Bits = Mapping[str, tuple[int, int]]


class Backend(abc.ABC):
    """A latency model of one accelerator (a profile) for any workload and bit allocation.

    Subclasses implement :meth:`_simulate`, the cost of distinct 8-bit convolutions; this class
    validates bits, maps layers to convolutions through the profile's precision model, runs
    each distinct convolution once and keeps every answer in memory, so a repeated allocation
    costs a few dictionary lookups per layer.

    Args:
        profile: A shipped profile name, a path to a profile YAML, or a :class:`Profile`.

    Raises:
        ProfileError: If the profile cannot be loaded.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"

    def __init__(self, profile: "str | Path | Profile" = "scalesim") -> None:
        self.profile = load_profile(profile)
        self._memo: dict[tuple[Layer, tuple[int, int]], LayerLatency] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(profile={self.profile.name!r})"

    def latency(self, workload: Workload, bits: Bits) -> LatencyReport:
        """Latency of ``workload`` when layer ``name`` runs at ``bits[name]``.

        Args:
            workload: The network's compute layers.
            bits: ``{layer_name: (weight_bits, act_bits)}`` for every layer of the workload.

        Returns:
            A :class:`LatencyReport` with a per-layer breakdown in execution order.

        Raises:
            ValueError: If a layer is missing from ``bits``, ``bits`` names a layer the workload
                lacks, or a bit width is outside 1..8 (the message names the layer).
            SimulationError: If the simulator cannot simulate a layer.
        """
        if len(bits) != len(workload.layers):
            self._check_names(workload, bits)
        memo = self._memo
        per_layer: dict[str, LayerLatency] = {}
        for layer in workload.layers:
            try:
                cost = memo.get((layer, bits[layer.name]))
            except (KeyError, TypeError):
                cost = None
            if cost is None:
                self._fill(workload, bits)
                cost = memo[(layer, tuple(bits[layer.name]))]
            per_layer[layer.name] = cost
        cycles = sum(cost.cycles for cost in per_layer.values())
        return LatencyReport(cycles=cycles, seconds=cycles / self.profile.clock_hz,
                             per_layer=per_layer, backend=self.name, profile=self.profile.name)

    def layer_table(self, workload: Workload, weight_bits: Iterable[int], act_bits: Iterable[int],
                    progress: bool = False) -> dict[str, dict[tuple[int, int], LayerLatency]]:
        """Cost of every layer at every ``(weight_bits, act_bits)`` combination.

        A search can precompute this once and add table entries instead of calling
        :meth:`latency`; it also fills every cache, so later :meth:`latency` calls are lookups.

        Args:
            workload: The network's compute layers.
            weight_bits: Weight bit widths to cover, e.g. ``(2, 3, 4, 8)``.
            act_bits: Activation bit widths to cover.
            progress: Show a progress bar while simulating.

        Returns:
            ``{layer_name: {(w, a): LayerLatency}}``.

        Raises:
            ValueError: If a bit width is outside 1..8.
            SimulationError: If the simulator cannot simulate a layer.
        """
        combos = list(itertools.product(sorted(set(weight_bits)), sorted(set(act_bits))))
        requests = [(layer, combo) for layer in workload.layers for combo in combos]
        self._resolve(requests, progress)
        return {layer.name: {combo: self._memo[(layer, combo)] for combo in combos}
                for layer in workload.layers}

    @staticmethod
    def _check_names(workload: Workload, bits: Bits) -> None:
        names = workload.names
        missing = [n for n in names if n not in bits]
        if missing:
            raise ValueError(f"layer {missing[0]!r} has no bits: give (weight_bits, act_bits) for every "
                             f"layer ({len(missing)} missing)")
        extra = sorted(set(bits) - set(names))
        raise ValueError(f"layer {extra[0]!r} in bits is not in workload {workload.name!r}")

    def _fill(self, workload: Workload, bits: Bits) -> None:
        requests = []
        for layer in workload.layers:
            if layer.name not in bits:
                self._check_names(workload, bits)
            requests.append((layer, check_bits(layer.name, bits[layer.name])))
        self._resolve(requests, progress=False)

    def _resolve(self, requests: list[tuple[Layer, tuple[int, int]]], progress: bool) -> None:
        """Compute every ``(layer, bits)`` not yet in the memo, each distinct convolution once."""
        jobs = {}
        labels: dict[SimSpec, str] = {}
        for layer, combo in requests:
            if (layer, combo) in self._memo:
                continue
            weight_bits, act_bits = check_bits(layer.name, combo)
            job = simulation_job(layer, self.profile, weight_bits, act_bits)
            jobs[(layer, combo)] = job
            labels.setdefault(job.spec, f"{layer.name} (w{weight_bits}/a{act_bits})")
        if not jobs:
            return
        results = self._simulate(labels, progress)
        for key, job in jobs.items():
            one = results[job.spec]
            self._memo[key] = dataclasses.replace(
                one, cycles=one.cycles * job.repeats, stall_cycles=one.stall_cycles * job.repeats,
                simulations=job.repeats)

    @abc.abstractmethod
    def _simulate(self, specs: Mapping[SimSpec, str], progress: bool) -> dict[SimSpec, LayerLatency]:
        """Cost of each distinct convolution.

        Args:
            specs: ``{spec: label}``; the label names the first layer needing the spec, for errors.
            progress: Show a progress bar.

        Returns:
            ``{spec: LayerLatency}`` for a single run of each spec.
        """
