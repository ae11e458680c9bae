"""Step 4: the Optuna study over per-layer bits, its objective, and the candidates it yields."""

from __future__ import annotations

import logging
import warnings
from typing import Callable

import optuna
from optuna.trial import TrialState

from brevitas_amed.job.context import Job
from brevitas_amed.job.inputs import reseed
from brevitas_amed.job.progress import Progress
from brevitas_amed.job.records import Candidate
from brevitas_amed.quant import Knob
from brevitas_amed.search import AMEDSampler, GeometricAnnealing, ModelSizeLimit
from brevitas_amed.training.loops import evaluate, train

log = logging.getLogger("brevitas_amed")

WEIGHT_PREFIX, ACT_PREFIX = "w:", "a:"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# --- parameters <-> knobs ----------------------------------------------------------------------
def param_name(knob: Knob) -> str:
    """The study parameter of a knob: ``w:<layer>`` or ``a:<module>``."""
    return WEIGHT_PREFIX + knob.name if knob.kind == "weight" else ACT_PREFIX + knob.name.removeprefix("act:")


def knob_name(param: str) -> str:
    """The knob of a study parameter (inverse of :func:`param_name`)."""
    return param[len(WEIGHT_PREFIX):] if param.startswith(WEIGHT_PREFIX) else "act:" + param[len(ACT_PREFIX):]


def search_params(job: Job) -> dict[str, list[int]]:
    """``{parameter: bit choices}`` for every searchable knob, in execution order."""
    return {param_name(job.qmodel.knobs[k]): list(choices) for k, choices in job.qmodel.search_space().items()}


# --- sampler and study ---------------------------------------------------------------------------
def size_constraint(job: Job) -> ModelSizeLimit | None:
    """The size limit on the sampler's parameters. Weights no parameter moves (pinned layers, a
    knob with one choice) are a fixed offset."""
    if job.quality.max_size_bits is None:
        return None
    q = job.qmodel
    moved = {param_name(q.knobs[k]): n for k, n in q.weight_counts().items()
             if k in q.search_space() and len(q.knobs[k].choices) > 1}
    if not moved:
        return None
    offset = q.weight_size_bits() - sum(n * q.knobs[knob_name(p)].bits for p, n in moved.items())
    return job.quality.size_constraint(moved, offset_bits=offset)


def make_sampler(job: Job) -> optuna.samplers.BaseSampler:
    """The recipe's sampler, seeded; AMED maximises the quality score under the size limit."""
    recipe, s = job.recipe, job.recipe.search
    if s.sampler == "amed":
        cooling = GeometricAnnealing(initial=s.temperature_start, final=s.temperature_end, n_trials=s.trials)
        return AMEDSampler(seed=recipe.seed, scalarization=job.quality, constraint=size_constraint(job),
                           temperature=cooling)
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=recipe.seed, multivariate=True)
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=recipe.seed, population_size=min(20, max(4, s.trials // 5)))
    return optuna.samplers.RandomSampler(seed=recipe.seed)


def storage_url(job: Job) -> str:
    return job.recipe.search.storage or f"sqlite:///{(job.out / 'study.db').resolve()}"


def make_storage(job: Job) -> optuna.storages.BaseStorage:
    """The study's RDB storage with Optuna's heartbeat: a trial whose worker died (no heartbeat for
    twice ``search.heartbeat_s``) is failed by the next worker's ``optimize`` and retried once."""
    beat = job.recipe.search.heartbeat_s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
        return optuna.storages.RDBStorage(storage_url(job), heartbeat_interval=beat, grace_period=2 * beat,
                                          heartbeat_stale_trial_callback=retry)


def open_study(job: Job, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    return optuna.create_study(storage=make_storage(job), study_name=job.recipe.search.study_name or job.recipe.name,
                               directions=["maximize", "minimize"], sampler=sampler or make_sampler(job),
                               load_if_exists=True)


# --- the objective -------------------------------------------------------------------------------
def estimate_accuracy(job: Job, knob_bits: dict[str, int], seed: int) -> float:
    """Short QAT at the proposed bits from the shared weights, then validation accuracy."""
    s = job.recipe.search
    q = job.qmodel
    q.load_state_dict(job.base_state)
    q.set_knob_bits(knob_bits)
    if s.adapt_steps:
        reseed(job.loaders, seed)
        train(q, job.loaders["train"], steps=s.adapt_steps, lr=s.adapt_lr)
    return evaluate(q, job.loaders["val"], s.eval_batches)


def make_objective(job: Job) -> Callable[[optuna.Trial], tuple[float, float]]:
    params = search_params(job)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        knob_bits = {knob_name(p): trial.suggest_categorical(p, choices) for p, choices in params.items()}
        size = job.size_bits(knob_bits)
        latency = job.latency.cycles(knob_bits)
        trial.set_user_attr("size_bits", size)
        trial.set_user_attr("latency_cycles", latency)
        job.quality.check_size(size)  # over the limit: pruned before any accuracy is computed
        accuracy = estimate_accuracy(job, knob_bits, job.recipe.seed + trial.number)
        trial.set_user_attr("quality", job.quality.score(accuracy, latency))
        return accuracy, float(latency)

    return objective


def best_quality(study: optuna.Study) -> float | None:
    values = [t.user_attrs["quality"] for t in study.get_trials(deepcopy=False) if "quality" in t.user_attrs]
    return max(values) if values else None


def run_search(job: Job, progress: Progress) -> optuna.Study:
    """Run the study until ``search.trials`` trials are complete or pruned (resuming a stored one)."""
    recipe = job.recipe
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are reported below, in one line
    study = open_study(job)
    objective, params = make_objective(job), search_params(job)
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    if not study.trials:
        study.enqueue_trial({p: max(c) for p, c in params.items()})  # the chain starts at uniform max bits
    remaining = max(0, recipe.search.trials - done)
    log.info("search: %s sampler, %d trials done, %d to run (%d searchable knobs)", recipe.search.sampler, done,
             remaining, len(params))
    if not remaining:
        return study
    mine: list[int] = []

    def tracked(trial: optuna.Trial) -> tuple[float, float]:
        mine.append(trial.number)
        return objective(trial)

    with progress(remaining, f"search ({recipe.search.sampler})") as bar:
        def tick(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            bar.update(1)
            if trial.state == TrialState.FAIL:
                reason = trial.system_attrs.get("fail_reason", "unknown error").strip().splitlines()[-1]
                log.warning("trial %d failed and counts as a rejected move: %s", trial.number, reason)
            best = best_quality(study)
            if best is not None:
                bar.set_postfix_str(f"best Q {best:.4f}")

        try:
            study.optimize(tracked, n_trials=remaining, timeout=recipe.search.timeout_s, callbacks=[tick],
                           catch=(RuntimeError, ValueError))
        except KeyboardInterrupt:
            # Ctrl-C outside the objective (while a result is stored, in a callback) can leave this
            # worker's trial RUNNING; fail it now rather than wait for its heartbeat to lapse.
            for number in mine:
                study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            raise
    return study


# --- candidates ----------------------------------------------------------------------------------
def pareto_candidates(job: Job, study: optuna.Study) -> list[Candidate]:
    """``finetune.top_k`` Pareto-best trials, best quality score first, one per latency."""
    front = [t for t in study.best_trials if "quality" in t.user_attrs]
    front.sort(key=lambda t: t.user_attrs["quality"], reverse=True)
    picked: list[Candidate] = []
    latencies: set[float] = set()
    sampler = job.recipe.search.sampler
    for t in front:
        if len(picked) == job.recipe.finetune.top_k:
            break
        if t.values[1] in latencies:
            continue  # same point of the front: fine-tuning it again adds nothing to the report
        latencies.add(t.values[1])
        picked.append(Candidate(label=f"{sampler}-t{t.number}", kind="search", method=sampler, trial=t.number,
                                knob_bits={knob_name(p): v for p, v in t.params.items()},
                                search_accuracy=t.values[0], search_quality=t.user_attrs["quality"]))
    return picked


def uniform_candidates(job: Job) -> list[Candidate]:
    """The uniform baselines of ``finetune.baselines``."""
    space = job.qmodel.search_space()
    return [Candidate(label=f"uniform-{b}", kind="baseline", method="uniform", knob_bits={k: b for k in space})
            for b in job.recipe.finetune.baselines]
