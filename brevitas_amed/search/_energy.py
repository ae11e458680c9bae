"""A per-process view of the study: known energies and the chain records, read incrementally.

Finished trials and stored records are immutable facts, so :class:`EnergyTable` reads each trial
once after it finishes, and each record once after it is written.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

from optuna.trial import FrozenTrial, TrialState

from brevitas_amed.search._kernel import State
from brevitas_amed.search._record import RECORD_KEY, ChainRecord, read_record
from brevitas_amed.search._space import ChainSpace

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
FAILURES_TO_GIVE_UP = 2
"""Failed trials (exceptions, such as an out-of-memory worker) after which a state with no
completed evaluation counts as infinite energy. A single failure leaves the state unknown, so it
may be proposed again; a pruned trial or a non-finite value is final at once."""


RETRY_MARK = "failed_trial"  # set by optuna.storages.RetryHeartbeatStaleTrialCallback


class EnergyTable:
    """Energies of the evaluated states and the chain records of the trials, read incrementally.

    A state's energy is the mean over its completed evaluations with finite energy; without one,
    it is infinite once pruned, non-finite or failed :data:`FAILURES_TO_GIVE_UP` times, and
    unknown before that.

    Args:
        space: The chain's coordinates.
        energy_of: Maps a completed trial's values to its energy (lower is better).
    """

    def __init__(self, space: ChainSpace, energy_of: Callable[[Sequence[float]], float]) -> None:
        self.space = space
        self._energy_of = energy_of
        # Per state: [sum of energies, completed, failed, pruned or non-finite].
        self._stats: dict[State, list[float]] = {}
        self.trial_states: dict[int, State | None] = {}
        self.failed: set[int] = set()
        self.records: dict[int, ChainRecord] = {}
        self.max_seq = -1
        self.head: int | None = None
        self._next = 0
        self._unfinished: set[int] = set()

    def update(self, trials: Sequence[FrozenTrial]) -> None:
        """Take in trials and records new since the last call; ``trials[i]`` must be trial ``i``."""
        numbers = sorted(self._unfinished) + list(range(self._next, len(trials)))
        self._next = len(trials)
        for number in numbers:
            trial = trials[number]
            if number not in self.records and RECORD_KEY in trial.system_attrs:
                self._add_record(number, trial)
            if trial.state not in FINISHED:
                self._unfinished.add(number)
                continue
            self._unfinished.discard(number)
            self._add(trial)

    def _add_record(self, number: int, trial: FrozenTrial) -> None:
        if RETRY_MARK in trial.system_attrs:
            # Optuna's retry of a stale trial copies its system attrs, chain record included: the
            # proposal was judged with the failed trial; the retry is a known energy only.
            return
        record = read_record(trial)
        if record is None:
            return
        self.records[number] = record
        self.max_seq = max(self.max_seq, record.seq)
        if self.head is None or (record.seq, number) > (self.records[self.head].seq, self.head):
            self.head = number

    def _add(self, trial: FrozenTrial) -> None:
        state = self.space.state_of(trial)
        self.trial_states[trial.number] = state
        if state is None:
            return
        stats = self._stats.setdefault(state, [0.0, 0, 0, 0])
        if trial.state == TrialState.COMPLETE:
            energy = self._energy_of(trial.values)
            if math.isfinite(energy):
                stats[0] += energy
                stats[1] += 1
            else:
                stats[3] += 1
        elif trial.state == TrialState.FAIL:
            self.failed.add(trial.number)
            stats[2] += 1
        else:
            stats[3] += 1

    def energy(self, state: State) -> float | None:
        """Energy of a state, ``None`` while unknown."""
        stats = self._stats.get(state)
        if stats is None:
            return None
        if stats[1]:
            return stats[0] / stats[1]
        if stats[3] or stats[2] >= FAILURES_TO_GIVE_UP:
            return math.inf
        return None

    def evaluations(self, state: State) -> int:
        """Number of completed evaluations of a state with a finite energy."""
        stats = self._stats.get(state)
        return int(stats[1]) if stats is not None else 0

    def best(self, feasible: Callable[[State], bool]) -> tuple[State, float] | None:
        """The feasible known state of lowest finite energy, ``None`` if there is none."""
        finite = sorted((s[0] / s[1], state) for state, s in self._stats.items() if s[1])
        for energy, state in finite:
            if feasible(state):
                return state, energy
        return None

    def finished_since(self, record: ChainRecord) -> list[int]:
        """Numbers of the finished trials a record has not yet taken into account, in order."""
        fresh = range(record.watermark + 1, self._next)
        numbers = [n for n in record.waiting if n in self.trial_states]
        numbers.extend(n for n in fresh if n in self.trial_states)
        return numbers

    def unfinished_up_to(self, last: int) -> list[int]:
        """Numbers up to ``last`` of the trials not finished when last updated."""
        return sorted(n for n in self._unfinished if n <= last)

    def running_states(self) -> Iterable[State]:
        """States that unfinished trials of the chain are evaluating."""
        for number in self._unfinished:
            record = self.records.get(number)
            if record is not None and record.proposal is not None:
                yield record.proposal.state
