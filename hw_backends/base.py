"""The interface every latency backend implements, and the one read-through path in front of it.

A backend answers ``latency(workload, bits)`` through three layers, all owned here: a memo of
every ``(layer, bits)`` already answered, a memo of every simulated spec, and (unless the backend
opts out) the persistent :class:`~hw_backends.cache.LatencyCache`. A subclass only computes the
specs that miss all three, in :meth:`Backend.simulate_specs`.

Two rules apply to every backend's answers, here and nowhere else:

* **Preload.** With finite bandwidth SCALE-Sim fills the active half of its read buffers before
  its cycle 0; that fill is added to the layer's cycles (and stalls), so no layer is faster than
  its own data can arrive (:func:`~hw_backends.scalesim_memory.preload_cycles`).
* **Monotone envelope.** The latency at ``(w, a)`` is the smallest raw latency over every
  ``(w' >= w, a' >= a)``: hardware that runs ``w'``-bit weights runs ``w``-bit ones too, so fewer
  bits are never slower, even where the simulator is off by a few cycles (SCALE-Sim in finite
  bandwidth is not monotone by itself). The first request for a pair computes the raw cost of
  every pair above it; memo and caches make later requests lookups.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import itertools
from typing import Any, ClassVar, Hashable, Iterable, Iterator, Mapping

from hw_backends.cache import LatencyCache, cache_key
from hw_backends.folding import folding
from hw_backends.precision import MAX_BITS, SimJob, SimSpec, check_bits, simulation_job
from hw_backends.profile import load_profile
from hw_backends.report import LatencyReport, LayerLatency
from hw_backends.scalesim_memory import preload_cycles
from hw_backends.workload import Layer, Workload

Bits = Mapping[str, tuple[int, int]]


def dominating(weight_bits: int, act_bits: int) -> list[tuple[int, int]]:
    """Every ``(w', a')`` with ``w' >= weight_bits`` and ``a' >= act_bits``, the pair itself first."""
    return [(w, a) for w in range(weight_bits, MAX_BITS + 1) for a in range(act_bits, MAX_BITS + 1)]


class Backend(abc.ABC):
    """A latency model of one accelerator (a profile) for any workload and bit allocation.

    This class validates bits, maps each layer to the spec it costs (:meth:`plan`: through the
    profile's precision model by default), and computes each distinct spec once: it looks the
    spec up in memory, then in the persistent cache, and only then asks the subclass's
    :meth:`simulate_specs`, storing each successful result in both. A repeated allocation costs
    a few dictionary lookups per layer; a failure is never stored.

    Args:
        profile: Anything :meth:`read_profile` accepts; by default a shipped profile name, a path
            to a profile YAML, or a :class:`Profile`.
        cache: A database URL, a :class:`LatencyCache`, ``None``/``True`` for the default
            persistent cache (``$BREVITAS_AMED_CACHE`` or ``~/.cache/brevitas-amed/latency.db``),
            or ``False`` (the default) for memory only. A backend whose results cost less than a
            database read (``analytic``) simply never passes one.

    Raises:
        ProfileError: If the profile cannot be loaded.
        ValueError: If the cache URL is invalid.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"

    def __init__(self, profile: Any = "scalesim", cache: "str | LatencyCache | bool | None" = False) -> None:
        self.profile = self.read_profile(profile)
        self.cache = LatencyCache.from_option(cache)
        self._memo: dict[tuple[Layer, tuple[int, int]], LayerLatency] = {}
        self._raw: dict[tuple[Layer, tuple[int, int]], LayerLatency] = {}
        self._results: dict[Hashable, LayerLatency] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(profile={self.profile.name!r})"

    @staticmethod
    def read_profile(profile: Any) -> Any:
        """The profile object from what the user passed (override for another kind of profile).

        It must have ``name``, ``clock_hz`` and ``content_hash`` (a hash of what changes results).
        """
        return load_profile(profile)

    @functools.cached_property
    def cache_namespace(self) -> tuple[str, ...]:
        """What besides the spec decides a result; the first part of every persistent cache key.

        Backend name and version and the profile's content hash; a subclass adds the version of
        the tool it runs.
        """
        return (self.name, self.version, self.profile.content_hash)

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

    def plan(self, layer: Layer, weight_bits: int, act_bits: int) -> SimJob:
        """The spec ``layer`` costs at these (validated) bits, and how many runs of it.

        By default the profile's precision model (:func:`~hw_backends.precision.simulation_job`).
        A backend that simulates layers as they are overrides it; its spec must be hashable, equal
        for equal costs, and have a ``key()`` tuple (part of the persistent cache key).
        """
        return simulation_job(layer, self.profile, weight_bits, act_bits)

    @abc.abstractmethod
    def simulate_specs(self, specs: Mapping[Any, str], progress: bool) -> Iterator[tuple[Any, LayerLatency]]:
        """Compute the specs found neither in memory nor in the persistent cache (the subclass hook).

        Called only with misses, each spec once. Yield ``(spec, result)`` as each result is known:
        the base class stores it at once, in memory and in the persistent cache, so a later
        failure loses nothing. Raise :class:`SimulationError` (or :class:`SimulationTimeout`) for a
        spec that cannot be computed: a failure is never stored.

        Args:
            specs: ``{spec: label}``; the label names the first layer needing the spec, for errors.
            progress: Show a progress bar.

        Yields:
            ``(spec, LayerLatency)`` for a single run of each spec.

        Raises:
            SimulationError: If a spec cannot be computed (the message names its label).
        """

    def _resolve(self, requests: list[tuple[Layer, tuple[int, int]]], progress: bool) -> None:
        """Cost every ``(layer, bits)`` not yet in the memo: the monotone envelope of the raw costs.

        The cost at ``(w, a)`` is the cheapest raw cost over every ``(w' >= w, a' >= a)``: a
        faster mode for more bits can always run fewer bits (values are sign- or zero-extended),
        so the reported latency never increases as bits drop, whatever the simulator does.
        """
        wanted = []
        for layer, combo in requests:
            if (layer, combo) not in self._memo:
                wanted.append((layer, check_bits(layer.name, combo)))
        if not wanted:
            return
        jobs: dict[tuple[Layer, tuple[int, int]], SimJob] = {}
        labels: dict[Hashable, str] = {}
        for layer, (weight_bits, act_bits) in wanted:
            for combo in dominating(weight_bits, act_bits):
                if (layer, combo) not in self._raw and (layer, combo) not in jobs:
                    jobs[(layer, combo)] = job = self.plan(layer, *combo)
                    labels.setdefault(job.spec, f"{layer.name} (w{combo[0]}/a{combo[1]})")
        results = self.spec_results(labels, progress) if labels else {}
        for key, job in jobs.items():
            one = self.preloaded(job.spec, results[job.spec])
            self._raw[key] = dataclasses.replace(
                one, cycles=one.cycles * job.repeats, stall_cycles=one.stall_cycles * job.repeats,
                simulations=job.repeats)
        for layer, combo in wanted:
            self._memo[(layer, combo)] = min((self._raw[(layer, c)] for c in dominating(*combo)),
                                             key=lambda cost: cost.cycles)

    def preloaded(self, spec: Hashable, one: LayerLatency) -> LayerLatency:
        """One run's cost with the DRAM fill SCALE-Sim does before its cycle 0 added.

        Only for :class:`SimSpec` specs with finite bandwidth; anything else is returned as is.

        Args:
            spec: The spec that was run.
            one: Its raw result (see :meth:`spec_results`).

        Returns:
            The result with the preload in its cycles and stall cycles.
        """
        if not isinstance(spec, SimSpec):
            return one
        extra = preload_cycles(spec, folding(spec, self.profile), self.profile)
        if not extra:
            return one
        cycles = one.cycles + extra
        return dataclasses.replace(one, cycles=cycles, stall_cycles=one.stall_cycles + extra,
                                   utilization=one.utilization * one.cycles / cycles)

    def spec_results(self, specs: Mapping[Hashable, str], progress: bool = False) -> dict[Hashable, LayerLatency]:
        """One raw run of each spec: from memory, else the persistent cache, else :meth:`simulate_specs`.

        Raw means as the simulator reports it: no preload, no envelope, no ``repeats``.

        Args:
            specs: ``{spec: label}`` (the label names a layer needing the spec, for errors).
            progress: Show a progress bar while simulating.

        Returns:
            ``{spec: LayerLatency}``.

        Raises:
            SimulationError: If a spec cannot be computed.
        """
        todo = [spec for spec in specs if spec not in self._results]
        if todo and self.cache is not None:
            keys = {cache_key(self.cache_namespace, spec.key()): spec for spec in todo}
            for key, result in self.cache.get_many(keys).items():
                self._results[keys[key]] = result
            todo = [spec for spec in todo if spec not in self._results]
        if todo:
            for spec, result in self.simulate_specs({spec: specs[spec] for spec in todo}, progress):
                self._results[spec] = result
                if self.cache is not None:
                    self.cache.put(cache_key(self.cache_namespace, spec.key()), self.name,
                                   self.profile.content_hash, spec.key(), result)
        return {spec: self._results[spec] for spec in specs}
