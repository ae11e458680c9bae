"""The chain's state as stored in the study: one record in the system attrs of each trial.

Each trial the chain samples carries a :class:`ChainRecord` in its system attrs: the chain's
state after the decisions made while sampling it, and the :class:`Proposal` that trial
evaluates, with the draws that will decide its acceptance. Records are ordered by a Lamport
sequence number (one more than the largest any earlier record the writer had read), ties broken
by trial number: the greatest is the chain's state, so any process that opens the study's
storage continues the same chain, whatever order Optuna sampled the trials in.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from optuna.study import Study
from optuna.trial import FrozenTrial

from brevitas_amed.search._kernel import State

RECORD_KEY = "amed:chain"
# RDB storages cap an attr value near 2,048 characters; chunks stay below that.
CHUNK_CHARS = 2000


@dataclasses.dataclass
class Proposal:
    """The state a trial evaluates and what decides its acceptance.

    ``refresh`` marks a re-evaluation of the chain's current state (every move landed on a
    known state, or a noisy current state was due for another evaluation): it refines that
    state's mean energy and is no Metropolis-Hastings move.
    """

    state: State
    log_hastings: float
    temperature: float
    log_u: float
    refresh: bool = False


@dataclasses.dataclass
class ChainRecord:
    """The chain's state as stored with a trial.

    ``watermark`` and ``waiting`` say which finished trials the record has taken into account:
    every trial numbered up to ``watermark`` except those in ``waiting``, which had not finished
    then. ``scales`` are the random-walk scales of the continuous coordinates, adapted during the
    first ``adaptation_moves`` decisions on continuous moves. ``first_trial`` is the number of
    the chain's first trial, from which the temperature schedule counts. ``stale`` counts the
    chain's own proposals that finished after the chain had left the state they were proposed
    from (the cost of parallel workers): they are kept as known energies, not as moves.
    ``since_evaluation`` counts the evaluated proposals rejected since the current state was
    entered or last re-evaluated; ``reevaluations`` the trials spent re-evaluating it for noise.
    """

    signature: str
    state: State
    energy: float
    seq: int = 0
    first_trial: int = 0
    moves: int = 0
    accepted: int = 0
    constraint_rejections: int = 0
    rejections_in_row: int = 0
    restarts: int = 0
    stale: int = 0
    adapted: int = 0
    since_evaluation: int = 0
    reevaluations: int = 0
    scales: list[float] = dataclasses.field(default_factory=list)
    watermark: int = -1
    waiting: list[int] = dataclasses.field(default_factory=list)
    proposal: Proposal | None = None

    def to_json(self) -> str:
        """The record as compact JSON; an infinite energy is stored as ``null``."""
        body = dataclasses.asdict(self)
        body["energy"] = None if math.isinf(self.energy) else self.energy
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ChainRecord:
        """The record :meth:`to_json` wrote."""
        body = json.loads(text)
        body["state"] = tuple(body["state"])
        body["energy"] = math.inf if body["energy"] is None else body["energy"]
        if body["proposal"] is not None:
            proposal = body["proposal"]
            body["proposal"] = Proposal(**{**proposal, "state": tuple(proposal["state"])})
        return cls(**body)

    def successor(self) -> ChainRecord:
        """A copy to continue the chain from, without this record's proposal."""
        return dataclasses.replace(
            self, scales=list(self.scales), waiting=list(self.waiting), proposal=None
        )

    def move_to(self, state: State, energy: float) -> None:
        """Make ``state`` the current state."""
        self.state = state
        self.energy = energy
        self.since_evaluation = 0


def write_record(study: Study, trial: FrozenTrial, record: ChainRecord) -> None:
    """Store a record in a trial's system attrs, split into chunks an RDB storage accepts."""
    text = record.to_json()
    chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
    for i, chunk in enumerate(chunks):
        _set_trial_system_attr(study, trial, f"{RECORD_KEY}:{i}", chunk)
    # The count goes last: a reader that sees it also sees every chunk.
    _set_trial_system_attr(study, trial, RECORD_KEY, len(chunks))


def _set_trial_system_attr(study: Study, trial: FrozenTrial, key: str, value: Any) -> None:
    # Optuna has no public API for a sampler to write a trial's system attrs; its own samplers
    # (CMA-ES, TPE, NSGA-II) write them through the study's storage exactly like this. This is
    # the only place the package touches private Optuna attributes.
    study._storage.set_trial_system_attr(trial._trial_id, key, value)


def read_record(trial: FrozenTrial) -> ChainRecord | None:
    """The record stored with a trial, or ``None`` if it has none."""
    n_chunks = trial.system_attrs.get(RECORD_KEY)
    if n_chunks is None:
        return None
    text = "".join(trial.system_attrs[f"{RECORD_KEY}:{i}"] for i in range(n_chunks))
    if '"seq":' not in text:
        return None  # written by brevitas-amed 0.1 (no sequence number): its chain is not resumed
    return ChainRecord.from_json(text)
