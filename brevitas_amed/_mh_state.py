"""Chain state kept in the study's storage, and a cache of known energies.

Each trial the chain proposes carries a :class:`ChainRecord` in its system attrs: the chain's
state as it was when that trial was sampled, with the proposals still waiting for a result. The
newest record in the study is the chain's state, so any process that opens the study's storage
continues the same chain. Energies of finished trials are immutable facts; :class:`EnergyTable`
caches them per process and reads only the trials it has not seen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Callable, Mapping, Sequence

from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from brevitas_amed import _mh

RECORD_KEY = "amed:chain"
# RDB storages cap an attr value near 2,048 characters; chunks stay below that.
_CHUNK = 2000
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


class ChainSpace:
    """The chain's coordinates: ordered discrete parameters, sorted by name.

    Args:
        search_space: Parameter distributions, all ordered discrete.
    """

    def __init__(self, search_space: Mapping[str, BaseDistribution]) -> None:
        self.names = tuple(sorted(search_space))
        self.distributions = tuple(search_space[n] for n in self.names)
        self.sizes = tuple(_mh.grid_size(d) for d in self.distributions)
        text = json.dumps(
            [[n, distribution_to_json(d)] for n, d in zip(self.names, self.distributions)]
        )
        self.signature = hashlib.sha1(text.encode()).hexdigest()[:16]

    def state_of(self, trial: FrozenTrial) -> _mh.State | None:
        """Indices of a trial's parameters, or ``None`` if it lacks one or used another grid."""
        state = []
        for name, distribution in zip(self.names, self.distributions):
            if trial.distributions.get(name) != distribution:
                return None
            state.append(_mh.to_index(distribution, trial.params[name]))
        return tuple(state)

    def params_of(self, state: _mh.State) -> dict[str, Any]:
        """External parameter values of a state."""
        return {
            name: _mh.to_value(distribution, index)
            for name, distribution, index in zip(self.names, self.distributions, state)
        }


@dataclasses.dataclass
class Pending:
    """A proposal under evaluation: the trial running it and what decides its acceptance."""

    trial: int
    proposal: _mh.State
    log_hastings: float
    temperature: float
    log_u: float
    epoch: int


@dataclasses.dataclass
class ChainRecord:
    """The chain's state as stored with a trial.

    ``epoch`` counts changes of the current state; a pending proposal made in another epoch is
    stale (the chain left the state it was proposed from) and is dropped when it finishes, its
    energy staying in the cache for later moves. ``watermark`` and ``waiting`` say which finished
    trials the record has already taken into account: every trial numbered up to ``watermark``
    except those in ``waiting``, which had not finished then.
    """

    signature: str
    state: _mh.State
    energy: float
    epoch: int = 0
    moves: int = 0
    accepted: int = 0
    constraint_rejections: int = 0
    rejections_in_row: int = 0
    restarts: int = 0
    watermark: int = -1
    waiting: list[int] = dataclasses.field(default_factory=list)
    pending: list[Pending] = dataclasses.field(default_factory=list)

    def to_json(self) -> str:
        body = dataclasses.asdict(self)
        body["energy"] = _encode_float(self.energy)
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ChainRecord:
        body = json.loads(text)
        body["state"] = tuple(body["state"])
        body["energy"] = _decode_float(body["energy"])
        body["pending"] = [
            Pending(**{**p, "proposal": tuple(p["proposal"])}) for p in body["pending"]
        ]
        return cls(**body)

    def move_to(self, state: _mh.State, energy: float) -> None:
        self.state = state
        self.energy = energy
        self.epoch += 1


def _encode_float(value: float) -> float | None:
    return None if math.isinf(value) else value


def _decode_float(value: float | None) -> float:
    return math.inf if value is None else value


def write_record(storage: BaseStorage, trial_id: int, record: ChainRecord) -> None:
    """Store a record in a trial's system attrs, split into chunks an RDB storage accepts."""
    text = record.to_json()
    chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)]
    for i, chunk in enumerate(chunks):
        storage.set_trial_system_attr(trial_id, f"{RECORD_KEY}:{i}", chunk)
    # The count goes last: a reader that sees it also sees every chunk.
    storage.set_trial_system_attr(trial_id, RECORD_KEY, len(chunks))


def read_record(trial: FrozenTrial) -> ChainRecord | None:
    """The record stored with a trial, or ``None`` if it has none."""
    n_chunks = trial.system_attrs.get(RECORD_KEY)
    if n_chunks is None:
        return None
    return ChainRecord.from_json(
        "".join(trial.system_attrs[f"{RECORD_KEY}:{i}"] for i in range(n_chunks))
    )


def newest_record(
    trials: Sequence[FrozenTrial], exclude: int, signature: str
) -> ChainRecord | None:
    """The newest record on the chain's current coordinates, ignoring trial ``exclude``.

    A newer record on other coordinates (the search space changed) ends the search: the old
    chain is not resumed.
    """
    for trial in reversed(trials):
        if trial.number == exclude:
            continue
        record = read_record(trial)
        if record is not None:
            return record if record.signature == signature else None
    return None


class EnergyTable:
    """Energies of finished trials and of the states they evaluated, read incrementally.

    A state's energy is the mean over its completed evaluations; a state whose trials all failed
    or were pruned has infinite energy.

    Args:
        space: The chain's coordinates.
        energy_of: Maps a completed trial's values to its energy (lower is better).
    """

    def __init__(self, space: ChainSpace, energy_of: Callable[[Sequence[float]], float]) -> None:
        self.space = space
        self._energy_of = energy_of
        self._sums: dict[_mh.State, list[float]] = {}
        self.trial_states: dict[int, _mh.State | None] = {}
        self._next = 0
        self._unfinished: set[int] = set()

    def update(self, trials: Sequence[FrozenTrial]) -> None:
        """Take in trials finished since the last call; ``trials[i]`` must be trial ``i``."""
        fresh = [trials[n] for n in sorted(self._unfinished) if trials[n].state in _FINISHED]
        fresh.extend(trials[self._next :])
        self._next = len(trials)
        for trial in fresh:
            if trial.state not in _FINISHED:
                self._unfinished.add(trial.number)
                continue
            self._unfinished.discard(trial.number)
            self._add(trial)

    def _add(self, trial: FrozenTrial) -> None:
        state = self.space.state_of(trial)
        self.trial_states[trial.number] = state
        if state is None:
            return
        sums = self._sums.setdefault(state, [0.0, 0])
        if trial.state == TrialState.COMPLETE:
            energy = self._energy_of(trial.values)
            if not math.isnan(energy) and not math.isinf(energy):
                sums[0] += energy
                sums[1] += 1

    def energy(self, state: _mh.State) -> float | None:
        """Energy of a state, ``None`` if no finished trial evaluated it."""
        sums = self._sums.get(state)
        if sums is None:
            return None
        return sums[0] / sums[1] if sums[1] else math.inf

    def best(self) -> tuple[_mh.State, float] | None:
        """The known state of lowest finite energy, ``None`` if there is none."""
        finite = [(s[0] / s[1], state) for state, s in self._sums.items() if s[1]]
        if not finite:
            return None
        energy, state = min(finite)
        return state, energy

    def first_finite(self) -> tuple[int, _mh.State, float] | None:
        """The lowest-numbered finished trial whose state has finite energy."""
        for number in sorted(self.trial_states):
            state = self.trial_states[number]
            if state is not None:
                energy = self.energy(state)
                if energy is not None and not math.isinf(energy):
                    return number, state, energy
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
