"""The ``scalesim`` backend: the real SCALE-Sim per layer, cached, in parallel, with a timeout."""

from __future__ import annotations

import functools
import multiprocessing
import os
import threading
import time
from importlib import metadata
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Iterator, Mapping

from tqdm import tqdm

from hw_backends.base import Backend
from hw_backends.cache import LatencyCache
from hw_backends.errors import SimulationError, SimulationTimeout
from hw_backends.precision import SimSpec
from hw_backends.profile import Profile
from hw_backends.report import LayerLatency
from hw_backends.scalesim_memory import prefetch_count

DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_MAX_PREFETCHES = 2000


class ScaleSimBackend(Backend):
    """SCALE-Sim 3 run per distinct convolution, each in its own worker process.

    Results are kept in memory and in a persistent :class:`LatencyCache`, keyed by backend
    version, SCALE-Sim version, profile contents and the simulated convolution, so a layer shape
    at a bit allocation is simulated once per machine (or cluster, with a shared database URL).

    Args:
        profile: A shipped profile name, a path to a profile YAML, or a :class:`Profile`.
        cache: A database URL, a :class:`LatencyCache`, ``None`` for the default
            (``$BREVITAS_AMED_CACHE`` or ``~/.cache/brevitas-amed/latency.db``), or ``False`` for
            no persistent cache.
        workers: Simulations run at once (default: the machine's CPU count).
        timeout_s: Longest a single convolution may simulate before :class:`SimulationTimeout`.
        max_prefetches: Refuse (with :class:`SimulationError`) a convolution on which SCALE-Sim's
            read buffers would make more DRAM prefetches than this, as predicted by
            :func:`~hw_backends.scalesim_memory.prefetch_count`; ``None`` for no limit. SCALE-Sim
            grows its traces by concatenation: memory grows with the count, time with its square.

    Raises:
        ProfileError: If the profile cannot be loaded.
        ValueError: If ``workers``, ``timeout_s`` or ``max_prefetches`` is not positive or the
            cache URL is invalid.
    """

    name = "scalesim"
    version = "1"

    def __init__(self, profile: "str | Path | Profile" = "scalesim", cache: "str | LatencyCache | bool | None" = None,
                 workers: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_prefetches: int | None = DEFAULT_MAX_PREFETCHES) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if max_prefetches is not None and max_prefetches < 1:
            raise ValueError(f"max_prefetches must be at least 1 (or None for no limit), got {max_prefetches}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        super().__init__(profile, cache)
        self.workers = workers or os.cpu_count() or 1
        self.timeout_s = float(timeout_s)
        self.max_prefetches = max_prefetches

    @functools.cached_property
    def cache_namespace(self) -> tuple[str, ...]:
        """Backend name and version, SCALE-Sim's version and the profile's content hash."""
        return (self.name, self.version, metadata.version("scalesim"), self.profile.content_hash)

    def simulate_specs(self, specs: Mapping[SimSpec, str], progress: bool) -> Iterator[tuple[SimSpec, LayerLatency]]:
        """Simulate ``specs`` on up to ``workers`` processes; yield each result as it arrives.

        Raises:
            SimulationError: The first failure, after every other job has finished.
        """
        context = _context()
        errors = [self._refusal(spec, label) for spec, label in specs.items() if self._too_long(spec)]
        pending = [(spec, label) for spec, label in specs.items() if not self._too_long(spec)]
        running: dict[Connection, tuple[multiprocessing.Process, SimSpec, float]] = {}
        bar = tqdm(total=len(pending), disable=not progress, unit="sim",
                   desc=f"SCALE-Sim {self.profile.name}")
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    spec, label = pending.pop(0)
                    receiver, sender = context.Pipe(duplex=False)
                    process = context.Process(target=_worker, args=(sender, spec, self.profile, label),
                                              daemon=True)
                    process.start()
                    sender.close()
                    running[receiver] = (process, spec, time.monotonic() + self.timeout_s)
                next_deadline = min(deadline for _p, _s, deadline in running.values())
                for receiver in wait(list(running), timeout=max(0.0, next_deadline - time.monotonic())):
                    process, spec, _deadline = running.pop(receiver)
                    outcome = _receive(receiver, process, specs[spec], self.profile.name)
                    if isinstance(outcome, SimulationError):
                        errors.append(outcome)
                    else:
                        yield spec, outcome
                    bar.update(1)
                errors.extend(self._reap_overdue(running, specs))
        finally:
            bar.close()
            for process, _spec, _deadline in running.values():
                process.kill()
        if errors:
            raise errors[0]

    def _too_long(self, spec: SimSpec) -> bool:
        return self.max_prefetches is not None and prefetch_count(spec, self.profile) > self.max_prefetches

    def _refusal(self, spec: SimSpec, label: str) -> SimulationError:
        count = prefetch_count(spec, self.profile)
        return SimulationError(
            f"SCALE-Sim would make {count:,} DRAM prefetches on layer {label} with profile "
            f"{self.profile.name!r} (its read buffers re-read a whole stream whenever a demand falls "
            f"behind their window; its traces would take hours and gigabytes); use the 'analytic' "
            f"backend, which replays that memory system, or pass max_prefetches={count} or None",
            layer=label, profile=self.profile.name)

    def _reap_overdue(self, running: dict, jobs: Mapping[SimSpec, str]) -> list[SimulationError]:
        now = time.monotonic()
        overdue = [receiver for receiver, (_p, _s, deadline) in running.items() if deadline <= now]
        timeouts = []
        for receiver in overdue:
            process, spec, _deadline = running.pop(receiver)
            process.kill()
            process.join()
            receiver.close()
            timeouts.append(SimulationTimeout(
                f"SCALE-Sim took longer than {self.timeout_s:g} s on layer {jobs[spec]} with profile "
                f"{self.profile.name!r}; raise timeout_s or use the 'analytic' backend",
                layer=jobs[spec], profile=self.profile.name))
        return timeouts


def _context():
    # fork where the platform has it: workers start in milliseconds and a user's script needs no
    # ``if __name__ == "__main__"`` guard (spawn and forkserver re-import the main module).
    # The workers run only SCALE-Sim (numpy), never the parent's torch threads.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _worker(sender: Connection, spec: SimSpec, profile: Profile, label: str) -> None:
    from hw_backends._scalesim_compat import simulate

    # SCALE-Sim creates (disabled) tqdm bars, which take tqdm's lock: by default a
    # multiprocessing semaphore shared with the parent. A worker killed at its timeout while
    # holding it would block the parent's next progress bar forever, so workers use their own.
    tqdm.set_lock(threading.RLock())
    try:
        sender.send(simulate(spec, profile, label))
    except SimulationError as exc:
        sender.send(exc)
    finally:
        sender.close()


def _receive(receiver: Connection, process: multiprocessing.Process, label: str,
             profile: str) -> LayerLatency | SimulationError:
    try:
        outcome = receiver.recv()
    except EOFError:
        process.join()
        return SimulationError(
            f"SCALE-Sim worker for layer {label} on profile {profile!r} died with exit code "
            f"{process.exitcode} (out of memory?); retry with fewer workers", layer=label, profile=profile)
    finally:
        receiver.close()
    process.join()
    return outcome
