"""The Metropolis-Hastings chain as an ask-and-tell object over a stored record.

:class:`Chain` makes every decision of the chain and keeps its counters: it takes in finished
trials (:meth:`Chain.tell_finished`), then walks through known states to the next state worth a
trial (:meth:`Chain.ask`). It reads energies and records from an :class:`EnergyTable` and
changes only its own :class:`ChainRecord`, which the sampler stores with the trial.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, Callable

from brevitas_amed.search import _kernel
from brevitas_amed.search._energy import EnergyTable
from brevitas_amed.search._kernel import State
from brevitas_amed.search._record import ChainRecord, Proposal


@dataclasses.dataclass(frozen=True)
class ChainSettings:
    """How the chain moves; see :class:`~brevitas_amed.search.AMEDSampler` for each field."""

    max_coordinates: int
    constraint: Callable[[dict[str, Any]], bool] | None
    restart_after: int | None
    max_moves: int
    adaptation_moves: int
    reevaluate_after: int | None = None
    max_evaluations: int = 1


class Chain:
    """One Metropolis-Hastings chain: its record, the known energies and a random source.

    Args:
        record: The chain's state; changed in place.
        table: Energies and records of the study.
        settings: How the chain moves.
        rng: Random source of every proposal and acceptance draw.
    """

    def __init__(
        self,
        record: ChainRecord,
        table: EnergyTable,
        settings: ChainSettings,
        rng: random.Random,
    ) -> None:
        self.record = record
        self._table = table
        self._settings = settings
        self._rng = rng

    @classmethod
    def load_or_start(
        cls,
        table: EnergyTable,
        number: int,
        n_trials_seen: int,
        settings: ChainSettings,
        rng: random.Random,
    ) -> Chain | None:
        """The chain of the newest record, or a new one at the best feasible known state.

        A newest record on other coordinates (the search space changed) is not resumed. A new
        chain takes every trial finished so far as known energies, none as a move, and counts
        its temperature schedule from trial ``number``.

        Args:
            table: Energies and records, already updated with the study's trials.
            number: The trial being sampled.
            n_trials_seen: Number of trials in the study.
            settings: How the chain moves.
            rng: Random source.

        Returns:
            The chain, or ``None`` if there is no stored chain and no known finite state.
        """
        space = table.space
        head = table.records.get(table.head) if table.head is not None else None
        if head is not None and head.signature == space.signature:
            return cls(head.successor(), table, settings, rng)
        chain = cls(ChainRecord(space.signature, (), math.inf), table, settings, rng)
        start = table.best(chain.feasible)
        if start is None:
            return None
        chain.record = ChainRecord(
            space.signature,
            start[0],
            start[1],
            first_trial=number,
            scales=[_kernel.INITIAL_SCALE] * len(space.continuous),
            watermark=n_trials_seen - 1,
            waiting=table.unfinished_up_to(n_trials_seen - 1),
        )
        return chain

    def feasible(self, state: State) -> bool:
        """Whether ``state`` passes the settings' constraint."""
        constraint = self._settings.constraint
        return constraint is None or bool(constraint(self._table.space.params_of(state)))

    def tell_finished(self) -> None:
        """Judge the chain's own proposals among the trials finished since the record.

        A proposal is judged with the draws stored when it was made, if the chain is at the
        state it was proposed from; otherwise (a branch of parallel workers moved the chain) it
        is stale. Stale proposals, re-evaluations and trials the chain did not propose
        (enqueued, or run by another sampler) add only known energies, never a move.
        """
        record, table = self.record, self._table
        for number in table.finished_since(record):
            own = table.records.get(number)
            state = table.trial_states[number]
            if own is None or own.proposal is None or state is None:
                continue
            if own.signature != record.signature or own.proposal.refresh or own.proposal.state != state:
                continue
            if own.state != record.state:
                record.stale += 1
                continue
            energy = math.inf if number in table.failed else table.energy(state)
            proposal = own.proposal
            moved = self._decide(
                state,
                math.inf if energy is None else energy,
                proposal.log_hastings,
                proposal.temperature,
                proposal.log_u,
            )
            record.rejections_in_row = 0 if moved else record.rejections_in_row + 1
            if not moved:
                record.since_evaluation += 1
            self._adapt(own.state, state, moved)
        # The current state's energy is the mean of all its evaluations, re-evaluations included.
        energy = table.energy(record.state)
        if energy is not None and math.isfinite(energy):
            record.energy = energy

    def ask(self, trial_number: int, temperature: float, n_trials_seen: int) -> State:
        """The state trial ``trial_number`` should evaluate, stored as the record's proposal.

        Restarts from the best known state if due; re-evaluates the current state if that is
        due (``reevaluate_after``); otherwise moves through known states until a proposal lands
        on one nobody evaluated yet, and if none does, the trial re-evaluates the current state.

        Args:
            trial_number: The trial that will evaluate the state.
            temperature: Temperature of this step.
            n_trials_seen: Number of trials in the study when sampling; the record has taken
                into account every finished one.

        Returns:
            The state to evaluate.
        """
        record = self.record
        self._maybe_restart()
        if self._reevaluation_due():
            # A noisy objective: the current energy may be one lucky draw that rejects every move.
            record.proposal = Proposal(record.state, 0.0, temperature, 0.0, refresh=True)
            record.since_evaluation = 0
            record.reevaluations += 1
        else:
            record.proposal = self._walk(temperature)
            if record.proposal.refresh:  # every move from here was rejected or known: a rejection too
                record.rejections_in_row += 1
        record.seq = self._table.max_seq + 1
        record.watermark = n_trials_seen - 1
        record.waiting = self._table.unfinished_up_to(record.watermark)
        return record.proposal.state

    def _reevaluation_due(self) -> bool:
        """Whether this trial re-evaluates the current state rather than proposing a move.

        Due after ``reevaluate_after`` evaluated proposals in a row were rejected since the state
        was entered or last re-evaluated, while the state has fewer than ``max_evaluations``
        completed or running evaluations.
        """
        record, after = self.record, self._settings.reevaluate_after
        if after is None or record.since_evaluation < after or math.isinf(record.energy):
            return False
        running = sum(1 for s in self._table.running_states() if s == record.state)
        return self._table.evaluations(record.state) + running < self._settings.max_evaluations

    def _decide(
        self, state: State, energy: float, log_hastings: float, temperature: float, log_u: float
    ) -> bool:
        """Make one Metropolis-Hastings decision; return whether the current state changed."""
        record = self.record
        record.moves += 1
        if not _kernel.accepts(record.energy, energy, log_hastings, temperature, log_u):
            return False
        record.accepted += 1
        if state == record.state:
            return False
        record.move_to(state, energy)
        return True

    def _adapt(self, origin: State, proposal: State, accepted: bool) -> None:
        record = self.record
        if record.adapted >= self._settings.adaptation_moves:
            return
        moved = [
            k for k, i in enumerate(self._table.space.continuous) if origin[i] != proposal[i]
        ]
        if not moved:
            return
        for k in moved:
            record.scales[k] = _kernel.adapt_scale(record.scales[k], accepted, record.adapted)
        record.adapted += 1

    def _maybe_restart(self) -> None:
        record, restart_after = self.record, self._settings.restart_after
        if restart_after is None or record.rejections_in_row < restart_after:
            return
        record.rejections_in_row = 0
        best = self._table.best(self.feasible)
        if best is not None and best[0] != record.state:
            record.restarts += 1
            record.move_to(*best)

    def _walk(self, temperature: float) -> Proposal:
        """Move through known states until a proposal lands on an unevaluated one."""
        record, settings, space = self.record, self._settings, self._table.space
        # Unknown states other workers are evaluating; proposing them again would waste a trial.
        running = set(self._table.running_states())
        scales = [0.0] * len(space.sizes)
        for k, i in enumerate(space.continuous):
            scales[i] = record.scales[k]
        for _ in range(settings.max_moves):
            proposal, log_hastings = _kernel.propose(
                record.state, space.sizes, scales, settings.max_coordinates, self._rng
            )
            proposal = space.canonical(proposal)
            if not self.feasible(proposal):
                record.moves += 1
                record.constraint_rejections += 1
                continue
            energy = self._table.energy(proposal)
            if energy is None:
                if proposal in running:
                    continue
                return Proposal(proposal, log_hastings, temperature, _kernel.draw_log_u(self._rng))
            self._decide(proposal, energy, log_hastings, temperature, _kernel.draw_log_u(self._rng))
        return Proposal(record.state, 0.0, temperature, 0.0, refresh=True)
