"""Step 4: the Optuna study over per-layer bits, its objective, and the candidates it yields (its
parameters: :mod:`brevitas_amed.job.space`)."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import warnings
from collections import Counter
from typing import Callable

import optuna
from optuna.trial import TrialState

from brevitas_amed.job.candidates import best_allocations, spread_allocations
from brevitas_amed.job.checkpoints import output_lock
from brevitas_amed.job.context import Job
from brevitas_amed.job.inputs import reseed
from brevitas_amed.job.interrupts import CtrlC
from brevitas_amed.job.progress import Progress
from brevitas_amed.job.records import Candidate
from brevitas_amed.job.space import allocation, check_space, search_params, size_constraint, start_allocations
from brevitas_amed.job.storage import has_heartbeat, make_storage
from brevitas_amed.search import AMEDSampler, GeometricAnnealing, binomial_noise
from brevitas_amed.training.device import out_of_memory_advice
from brevitas_amed.training.loops import evaluate, reestimate_batchnorm, train

log = logging.getLogger("brevitas_amed")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# --- sampler and study ---------------------------------------------------------------------------
def evaluation_noise(job: Job) -> float:
    """One trial's accuracy noise: the binomial standard error of the accuracy threshold (the
    float model's validation accuracy without one) over the validation images a trial evaluates.
    Above the threshold it is the noise of the quality score too."""
    batches = job.recipe.search.eval_batches
    n = len(job.data.val) if batches is None else min(len(job.data.val), batches * job.recipe.data.batch_size)
    accuracy = job.quality.accuracy_threshold
    return binomial_noise(job.float_accuracy.val if accuracy is None else min(1.0, max(0.0, accuracy)), max(1, n))


def temperatures(job: Job) -> tuple[float, float]:
    """AMED's initial and final temperatures in quality-score units."""
    s = job.recipe.search
    unit = evaluation_noise(job) if s.temperature_unit == "noise" else 1.0
    return s.temperature_start * unit, s.temperature_end * unit


def make_sampler(job: Job) -> optuna.samplers.BaseSampler:
    """The recipe's sampler, seeded; AMED maximises the quality score under the size limit,
    re-evaluating a state the chain is stuck at (a lucky draw) and cooling relative to the noise."""
    recipe, s = job.recipe, job.recipe.search
    if s.sampler == "amed":
        start, end = temperatures(job)
        cooling = GeometricAnnealing(initial=start, final=end, n_trials=s.trials)
        return AMEDSampler(seed=recipe.seed, scalarization=job.quality, constraint=size_constraint(job),
                           temperature=cooling, reevaluate_after=s.reevaluate_after, max_evaluations=s.max_evaluations)
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=recipe.seed, multivariate=True)
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=recipe.seed, population_size=min(20, max(4, s.trials // 5)))
    return optuna.samplers.RandomSampler(seed=recipe.seed)


def open_study(job: Job, sampler: optuna.samplers.BaseSampler | None = None,
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    return optuna.create_study(storage=storage or make_storage(job.recipe, job.out),
                               study_name=job.recipe.search.study_name or job.recipe.name,
                               directions=["maximize", "minimize"], sampler=sampler or make_sampler(job),
                               load_if_exists=True)


# --- the objective -------------------------------------------------------------------------------
def estimate_accuracy(job: Job, knob_bits: dict[str, int], seed: int) -> float:
    """The search's accuracy of an allocation, from the shared weights: ``search.adapt_steps`` QAT
    steps (proxy ``adapt``) or batch-norm statistics re-estimated on ``search.bn_batches`` training
    batches (proxy ``batchnorm``), then validation accuracy; the mean of ``search.draws`` such
    draws on other batches.

    A departure from AMED, whose chain trains one network's weights as it moves: every trial here
    restarts from the shared weights (trained once at random bits), so a trial's accuracy depends
    only on its bits and seed, parallel workers can share one study, and a rerun repeats it."""
    s = job.recipe.search
    q = job.qmodel
    accuracies = []
    for draw in range(s.draws):
        q.load_state_dict(job.base_state)
        q.set_knob_bits(knob_bits)
        reseed(job.loaders, seed + 100_003 * draw)
        if s.proxy == "batchnorm":
            reestimate_batchnorm(q, job.loaders["train"], s.bn_batches)
        elif s.adapt_steps:
            train(q, job.loaders["train"], steps=s.adapt_steps, lr=s.adapt_lr)
        accuracies.append(evaluate(q, job.loaders["val"], s.eval_batches))
    return sum(accuracies) / len(accuracies)


WORKER = f"{socket.gethostname()}:{os.getpid()}"


def make_objective(job: Job) -> Callable[[optuna.Trial], tuple[float, float]]:
    params = search_params(job)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        trial.set_user_attr("worker", f"{WORKER} {job.device}")
        knob_bits = allocation(job, {p: trial.suggest_categorical(p, choices) for p, choices in params.items()})
        size = job.size_bits(knob_bits)
        latency = job.latency.cycles(knob_bits)
        trial.set_user_attr("size_bits", size)
        trial.set_user_attr("latency_cycles", latency)
        job.quality.check_size(size)  # over the limit: pruned before any accuracy is computed
        with out_of_memory_advice(f"trial {trial.number}", job.device, job.recipe.data.batch_size):
            accuracy = estimate_accuracy(job, knob_bits, job.recipe.seed + trial.number)
        trial.set_user_attr("quality", job.quality.score(accuracy, latency))
        return accuracy, float(latency)

    return objective


def best_quality(study: optuna.Study) -> float | None:
    values = [t.user_attrs["quality"] for t in study.get_trials(deepcopy=False) if "quality" in t.user_attrs]
    return max(values) if values else None


def counts(study: optuna.Study) -> Counter:
    """Trials of the study by state."""
    return Counter(t.state for t in study.get_trials(deepcopy=False))


def budget_left(study: optuna.Study, trials: int) -> int:
    """Trials still to start: the budget less finished trials and those running now (in any
    worker). Workers that start at the same moment may overshoot it by one trial each."""
    n = counts(study)
    return trials - n[TrialState.COMPLETE] - n[TrialState.PRUNED] - n[TrialState.RUNNING]


def run_search(job: Job, progress: Progress, settle: bool = True) -> optuna.Study:
    """Run the study until ``search.trials`` trials are complete or pruned (resuming a stored one),
    sharing the budget with every other worker on the same storage.

    Args:
        settle: Then wait for other workers' running trials (or for their heartbeat to lapse) and
            run what is still missing, so the study is complete for fine-tuning. A worker that
            only searches (``--join``) does not settle.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are reported below, in one line
    storage = make_storage(job.recipe, job.out)
    with output_lock(job.out, "opening the study"):  # one worker creates it and enqueues the start
        study = open_study(job, storage=storage)
        check_space(job, study)
        if not study.trials:
            for params in start_allocations(job):
                study.enqueue_trial(params)
    search_pass(job, study, progress)
    if settle and has_heartbeat(storage):
        beat = job.recipe.search.heartbeat_s
        wait_for_running(study, beat)
        if budget_left(study, job.recipe.search.trials) > 0:  # retried or failed trials of other workers
            search_pass(job, study, progress)
            wait_for_running(study, beat)
    return study


def wait_for_running(study: optuna.Study, heartbeat_s: float, poll_s: float = 1.0) -> None:
    """Until no trial runs: live workers finish theirs; a dead worker's trial is failed (and its
    parameters queued again) once its heartbeat lapses.

    A trial whose worker died before its first heartbeat is never failed by Optuna; so the wait
    ends, with a warning, once every running trial has run ten times as long as a typical
    completed one (plus ten heartbeats). Such a trial is left as it is, never failed here.
    """
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if not running:
            return
        durations = sorted(t.duration.total_seconds() for t in trials if t.state == TrialState.COMPLETE and t.duration)
        patience = 10 * (durations[len(durations) // 2] if durations else 0) + 10 * heartbeat_s
        now = time.time()
        if all(now - t.datetime_start.timestamp() > patience for t in running):
            log.warning("trials %s have run for over %.0f s; going on without them", [t.number for t in running],
                        patience)
            return
        time.sleep(poll_s)


def search_pass(job: Job, study: optuna.Study, progress: Progress) -> None:
    """This worker's trials: until the shared budget is spent, at most the trials missing now."""
    recipe = job.recipe
    objective, params = make_objective(job), search_params(job)
    n = counts(study)
    done = n[TrialState.COMPLETE] + n[TrialState.PRUNED]
    remaining = max(0, recipe.search.trials - done)
    log.info("search: %s sampler, %d trials done, %d running, %d to run (%d searchable knobs)", recipe.search.sampler,
             done, n[TrialState.RUNNING], remaining, len(params))
    if recipe.search.bit_choices == "latency_levels":
        log.info("search: latency levels keep %s of %s allocations", f"{math.prod(len(c) for c in params.values()):,}",
                 f"{math.prod(len(c) for c in job.qmodel.search_space().values()):,}")
    if budget_left(study, recipe.search.trials) <= 0:
        return
    if recipe.search.sampler == "amed":
        start, end = temperatures(job)
        log.info("search: accuracy noise of one trial %.4f; temperature %.4g -> %.4g (score units)",
                 evaluation_noise(job), start, end)
    mine: list[int] = []
    ctrl_c = CtrlC()

    def tracked(trial: optuna.Trial) -> tuple[float, float]:
        mine.append(trial.number)
        ctrl_c.in_objective = True
        try:
            if ctrl_c.requested:  # pressed while this trial was asked for: failed, not run
                raise KeyboardInterrupt
            return objective(trial)
        except (RuntimeError, ValueError) as exc:  # its reason, for the log line and trials.json
            trial.set_user_attr("error", (str(exc).strip().splitlines() or [type(exc).__name__])[0])
            raise
        finally:
            ctrl_c.in_objective = False

    with progress(remaining, f"search ({recipe.search.sampler})") as bar:
        def tick(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            bar.update(1)
            if trial.state == TrialState.FAIL:
                log.warning("trial %d failed and counts as a rejected move: %s", trial.number,
                            trial.user_attrs.get("error", "unknown error"))
            best = best_quality(study)
            if best is not None:
                bar.set_postfix_str(f"best Q {best:.4f}")
            if budget_left(study, recipe.search.trials) <= 0 or ctrl_c.requested:
                study.stop()  # the other workers' running trials complete the budget; or Ctrl-C

        try:
            with ctrl_c:
                study.optimize(tracked, n_trials=remaining, timeout=recipe.search.timeout_s, callbacks=[tick],
                               catch=(RuntimeError, ValueError))
            if ctrl_c.requested:  # noted outside the objective: the study stopped before another trial
                raise KeyboardInterrupt
        except (KeyboardInterrupt, UnboundLocalError) as exc:
            # Optuna 5 turns a KeyboardInterrupt raised while it stores a result into this
            # UnboundLocalError; any other error is a real one and propagates as it is
            if isinstance(exc, UnboundLocalError) and not ctrl_c.requested:
                raise
            # a second Ctrl-C (outside the objective) can leave this worker's trial RUNNING; fail
            # it now rather than wait for its heartbeat to lapse
            for number in mine:
                study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise KeyboardInterrupt from exc


# --- candidates ----------------------------------------------------------------------------------
def pareto_candidates(job: Job, study: optuna.Study) -> list[Candidate]:
    """``finetune.top_k`` allocations of the Pareto front of *mean* accuracies (a re-evaluated
    state counts once, with the mean of its evaluations: one lucky draw does not make a
    candidate), best quality score of the mean first, one per latency; each is named after its
    first trial. ``finetune.candidates``: the best scores (``quality``), or the best score and
    faster points spread down the front (``spread``, see :func:`spread_allocations`)."""
    sampler, ft = job.recipe.search.sampler, job.recipe.finetune
    if ft.candidates == "spread":
        found = spread_allocations(study, job.quality.score, ft.top_k, job.quality.accuracy_threshold,
                                   ft.spread_margin)
    else:
        found = best_allocations(study, job.quality.score, ft.top_k)
    return [Candidate(label=f"{sampler}-t{a.trial}", kind="search", method=sampler, trial=a.trial,
                      knob_bits=allocation(job, a.params), search_accuracy=a.accuracy,
                      search_quality=a.quality, evaluations=a.evaluations)
            for a in found]


def uniform_candidates(job: Job) -> list[Candidate]:
    """The uniform baselines of ``finetune.baselines``."""
    space = job.qmodel.search_space()
    return [Candidate(label=f"uniform-{b}", kind="baseline", method="uniform", knob_bits={k: b for k in space})
            for b in job.recipe.finetune.baselines]
