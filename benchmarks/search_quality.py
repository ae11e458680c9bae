"""Search quality of AMEDSampler against Optuna's samplers, on problems with a known optimum.

Each problem is a bit allocation for ResNet-18's 21 conv/linear layers, one width per layer
(weights and activations share it) from {2, 3, 4, 6, 8}:

* latency: real per-layer cycles from ``hw_backends`` (analytic SCALE-Sim model, stock 32x32
  profile, Bit Fusion precision) on the ResNet-18 workload at 224x224;
* accuracy: synthetic but shaped like measured sensitivities. Layer ``l`` at ``b`` bits costs
  ``s_l * 4 ** (2 - b)`` accuracy (quantisation noise power falls 4x per bit), with ``s_l``
  log-normal, larger for the first and last layers, summing to 0.6 (uniform 2-bit loses 60
  points, uniform 4-bit 3.75), from a float accuracy of 0.70;
* score: :class:`~brevitas_amed.QualityScore` with ``beta=0.1``, the uniform 8-bit latency as
  reference, a threshold 2 points under float accuracy and ``penalty=10``.

Accuracy and latency are sums over layers and the score rises with accuracy and falls with
latency, so the best allocation lies on the Pareto front of (accuracy drop, cycles). Dynamic
programming over layers with dominance pruning gives that front exactly, hence the exact optimum
of the score and the largest hypervolume any set of trials can reach.

Two forms: ``single`` maximises the score directly; ``pareto`` is the pipeline's two-objective
study (maximise accuracy, minimise latency), where AMED moves on the quality score and the other
samplers run their multi-objective defaults. Every study starts from an enqueued uniform 8-bit
trial. Sampler time is the time spent inside the sampler's methods, per trial, over the last 100
of 1,000 trials on the single-objective form.

The mixed problem (``--problem mixed``) adds three continuous knobs to the single-objective
bit problem (a log-scaled learning rate, weight decay, a mixing factor), each costing
``0.02 * d ** 2`` of score at scaled distance ``d`` from a known optimum, so the exact optimum is
the bit problem's. AMED, TPE, CMA-ES (needs ``pip install cmaes``; categorical bits go to its
independent sampler) and random search get equal budgets; the table gives the median relative
gap over seeds. GP is opt-in (``--mixed-samplers amed,gp,random --gp-trials 60``).

Default run (a few minutes on 2 cores; ``--problem bits`` or ``mixed`` for one of them)::

    python benchmarks/search_quality.py

Bigger runs: ``--seeds 10 --trials 1000``; GPSampler (4-15 s a trial with 21 categorical
parameters on 2 CPU cores) with ``--samplers amed,gp --seeds 1``.
"""

from __future__ import annotations

import argparse
import importlib.util
import dataclasses
import time
from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.samplers import BaseSampler

from brevitas_amed.search import AMEDSampler, QualityScore

CHOICES = (2, 3, 4, 6, 8)
FLOAT_ACCURACY = 0.70
TOTAL_SENSITIVITY = 0.6
BETA = 0.1
THRESHOLD_DROP = 0.02
PENALTY = 10.0


def latency_table(choices: Sequence[int] = CHOICES) -> tuple[list[str], np.ndarray]:
    """Per-layer cycles of ResNet-18 at each uniform bit width, from ``hw_backends``.

    Returns:
        Layer names in execution order and an array ``cycles[layer, choice]``.
    """
    import torchvision

    import hw_backends
    from brevitas_amed.quant import build_workload

    workload = build_workload(torchvision.models.resnet18(), (3, 224, 224))
    backend = hw_backends.get("analytic", profile="scalesim")
    names = [layer.name for layer in workload.layers]
    columns = []
    for bits in choices:
        report = backend.latency(workload, {name: (bits, bits) for name in names})
        columns.append([report.per_layer[name].cycles for name in names])
    return names, np.array(columns, dtype=float).T


@dataclasses.dataclass
class Problem:
    """One benchmark problem: per-layer accuracy drops and cycles for every choice."""

    names: list[str]
    drop: np.ndarray
    cycles: np.ndarray
    quality: QualityScore

    def values(self, index: np.ndarray) -> tuple[float, float]:
        """Accuracy and latency of an allocation given as choice indices per layer."""
        rows = np.arange(len(self.names))
        return (
            FLOAT_ACCURACY - float(self.drop[rows, index].sum()),
            float(self.cycles[rows, index].sum()),
        )


def make_problem(names: list[str], cycles: np.ndarray, seed: int) -> Problem:
    """A problem with random layer sensitivities on a fixed latency table."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 0.7, len(names))
    weights[[0, -1]] *= 3.0  # first and last layers are the most sensitive
    sensitivity = TOTAL_SENSITIVITY * weights / weights.sum()
    noise = 4.0 ** (2.0 - np.array(CHOICES, dtype=float))
    quality = QualityScore(
        beta=BETA,
        reference_latency=float(cycles[:, -1].sum()),
        accuracy_threshold=FLOAT_ACCURACY - THRESHOLD_DROP,
        penalty=PENALTY,
    )
    return Problem(names, np.outer(sensitivity, noise), cycles, quality)


def exact_front(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """The exact Pareto front of (accuracy drop, cycles), both minimised, by layer-wise DP.

    Returns:
        Drops and cycles of the front's points, sorted by cycles.
    """
    drops, cycles = np.zeros(1), np.zeros(1)
    for layer in range(len(problem.names)):
        drops = (drops[:, None] + problem.drop[layer][None, :]).ravel()
        cycles = (cycles[:, None] + problem.cycles[layer][None, :]).ravel()
        order = np.lexsort((drops, cycles))
        drops, cycles = drops[order], cycles[order]
        keep = drops < np.minimum.accumulate(np.concatenate([[np.inf], drops[:-1]]))
        drops, cycles = drops[keep], cycles[keep]
    return drops, cycles


def optimum(problem: Problem, front: tuple[np.ndarray, np.ndarray]) -> float:
    """The exact best score."""
    drops, cycles = front
    return max(problem.quality.score(FLOAT_ACCURACY - d, c) for d, c in zip(drops, cycles))


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume of 2-D points (both minimised) dominated within ``reference``."""
    points = points[np.all(points < reference, axis=1)]
    if len(points) == 0:
        return 0.0
    points = points[np.lexsort((points[:, 1], points[:, 0]))]
    keep = points[:, 1] < np.minimum.accumulate(np.concatenate([[np.inf], points[:-1, 1]]))
    front = points[keep]
    firsts = np.append(front[:, 0], reference[0])
    return float(np.sum((firsts[1:] - firsts[:-1]) * (reference[1] - front[:, 1])))


def hv_points(problem: Problem, accuracy: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Minimised, normalised coordinates: (accuracy drop, latency / uniform 8-bit latency)."""
    return np.column_stack(
        [FLOAT_ACCURACY - accuracy, latency / problem.quality.reference_latency]
    )


HV_REFERENCE = np.array([0.1, 1.0])  # at most 10 points of accuracy lost, any speed-up counts


def make_sampler(name: str, form: str, problem: Problem, seed: int) -> BaseSampler:
    """A fresh sampler by name; AMED moves on the quality score in the two-objective form."""
    if name == "amed":
        return AMEDSampler(seed=seed, scalarization=problem.quality if form == "pareto" else None)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; allowed: amed, tpe, nsga2, gp, random")


class TimedSampler(BaseSampler):
    """Delegates to a sampler and adds up the time spent in it."""

    def __init__(self, inner: BaseSampler) -> None:
        self.inner = inner
        self.seconds: dict[int, float] = {}

    def _timed(self, number: int, call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return call()
        finally:
            self.seconds[number] = self.seconds.get(number, 0.0) + time.perf_counter() - start

    def infer_relative_search_space(self, study, trial):
        return self._timed(trial.number, lambda: self.inner.infer_relative_search_space(study, trial))

    def sample_relative(self, study, trial, search_space):
        return self._timed(
            trial.number, lambda: self.inner.sample_relative(study, trial, search_space)
        )

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._timed(
            trial.number,
            lambda: self.inner.sample_independent(study, trial, param_name, param_distribution),
        )

    def before_trial(self, study, trial):
        self._timed(trial.number, lambda: self.inner.before_trial(study, trial))

    def after_trial(self, study, trial, state, values):
        self._timed(trial.number, lambda: self.inner.after_trial(study, trial, state, values))

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


def run_study(
    problem: Problem, form: str, sampler: BaseSampler, n_trials: int
) -> tuple[np.ndarray, np.ndarray]:
    """Run one study from a uniform 8-bit start; return accuracy and latency per trial."""
    names = [f"w:{name}" for name in problem.names]

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        index = np.array([CHOICES.index(trial.suggest_categorical(n, CHOICES)) for n in names])
        accuracy, latency = problem.values(index)
        return problem.quality.score(accuracy, latency) if form == "single" else (accuracy, latency)

    directions = ["maximize"] if form == "single" else ["maximize", "minimize"]
    study = optuna.create_study(directions=directions, sampler=sampler)
    study.enqueue_trial({n: 8 for n in names})
    study.optimize(objective, n_trials=n_trials)
    accuracy, latency = [], []
    for trial in study.trials:
        index = np.array([CHOICES.index(trial.params[n]) for n in names])
        acc, lat = problem.values(index)
        accuracy.append(acc)
        latency.append(lat)
    return np.array(accuracy), np.array(latency)


@dataclasses.dataclass
class Outcome:
    """Metrics of one study."""

    gaps: dict[int, float]
    relative_gap: float
    hv_ratio: float


def evaluate(
    problem: Problem,
    front: tuple[np.ndarray, np.ndarray],
    accuracy: np.ndarray,
    latency: np.ndarray,
    checkpoints: Sequence[int],
) -> Outcome:
    """Gap to the optimum after each checkpoint and hypervolume ratio at the end.

    The gap is the share of the improvement over uniform 8-bit that the best trial so far misses:
    ``(Q* - Q_best) / (Q* - Q_8bit)``; the relative gap is ``(Q* - Q_best) / Q*``.
    """
    best = optimum(problem, front)
    scores = np.array([problem.quality.score(a, l) for a, l in zip(accuracy, latency)])
    running = np.maximum.accumulate(scores)
    gaps = {k: (best - running[k - 1]) / (best - scores[0]) for k in checkpoints}
    exact_hv = hypervolume(
        hv_points(problem, FLOAT_ACCURACY - front[0], front[1]), HV_REFERENCE
    )
    found_hv = hypervolume(hv_points(problem, accuracy, latency), HV_REFERENCE)
    return Outcome(gaps, (best - running[-1]) / best, found_hv / exact_hv)


def sampler_ms_per_trial(problem: Problem, name: str, n_trials: int) -> float:
    """Mean sampler time per trial over the last 100 of ``n_trials`` trials, in ms."""
    timed = TimedSampler(make_sampler(name, "single", problem, seed=0))
    run_study(problem, "single", timed, n_trials)
    last = [timed.seconds.get(n, 0.0) for n in range(n_trials - 100, n_trials)]
    return 1000.0 * float(np.mean(last))


# The mixed problem: the bit problem plus continuous training knobs with a known optimum.
# Each knob costs MIXED_WEIGHT * d ** 2 of score at distance d from its optimum in its
# (log-)scaled range mapped to [0, 1], so the exact optimum is the bit problem's.
MIXED_KNOBS = {  # name: (low, high, log, optimum)
    "lr": (1e-5, 1e-1, True, 3e-3),
    "weight_decay": (0.0, 0.1, False, 0.02),
    "mixup": (0.0, 1.0, False, 0.7),
}
MIXED_WEIGHT = 0.02


def _scaled(name: str, value: float) -> float:
    low, high, log, _ = MIXED_KNOBS[name]
    if log:
        return (np.log(value) - np.log(low)) / (np.log(high) - np.log(low))
    return (value - low) / (high - low)


def knob_loss(params: dict[str, float]) -> float:
    """Score lost by the continuous knobs away from their optimum."""
    return MIXED_WEIGHT * sum(
        (_scaled(n, params[n]) - _scaled(n, knob[3])) ** 2 for n, knob in MIXED_KNOBS.items()
    )


def make_mixed_sampler(name: str, seed: int) -> BaseSampler:
    """A fresh sampler for the single-objective mixed problem."""
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return make_sampler(name, "single", None, seed)  # type: ignore[arg-type]


def run_mixed_study(problem: Problem, sampler: BaseSampler, n_trials: int) -> float:
    """Best score of one mixed study, started from uniform 8-bit and mid-range knobs."""
    names = [f"w:{name}" for name in problem.names]

    def objective(trial: optuna.Trial) -> float:
        index = np.array([CHOICES.index(trial.suggest_categorical(n, CHOICES)) for n in names])
        knobs = {n: trial.suggest_float(n, k[0], k[1], log=k[2]) for n, k in MIXED_KNOBS.items()}
        return problem.quality.score(*problem.values(index)) - knob_loss(knobs)

    start = {n: 8 for n in names}
    for n, (low, high, log, _) in MIXED_KNOBS.items():
        start[n] = float(np.sqrt(low * high)) if log else (low + high) / 2
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(start)
    study.optimize(objective, n_trials=n_trials)
    return study.best_value


def mixed_table(names: list[str], cycles: np.ndarray, samplers: Sequence[str], seeds: int,
                trials: int, gp_trials: int) -> None:
    """Relative gap ``(Q* - Q_best) / Q*`` on the mixed problem, median over seeds."""
    print()
    print(f"Mixed problem: {len(names)} bit widths + {len(MIXED_KNOBS)} continuous knobs "
          f"({', '.join(MIXED_KNOBS)}), median of {seeds} seeds")
    print()
    print("| sampler | trials | rel. gap median (%) | min (%) | max (%) | s/study |")
    print("|---|---|---|---|---|---|")
    for name in samplers:
        budget = gp_trials if name == "gp" else trials
        if budget == 0:
            continue
        if name == "cmaes" and importlib.util.find_spec("cmaes") is None:
            print("| cmaes | - | skipped: `pip install cmaes` | | | |")
            continue
        gaps, seconds = [], []
        for seed in range(seeds):
            problem = make_problem(names, cycles, seed)
            best = optimum(problem, exact_front(problem))
            start = time.perf_counter()
            found = run_mixed_study(problem, make_mixed_sampler(name, seed), budget)
            seconds.append(time.perf_counter() - start)
            gaps.append((best - found) / best)
        print(f"| {name} | {budget} | {100 * np.median(gaps):.3f} | {100 * min(gaps):.3f} "
              f"| {100 * max(gaps):.3f} | {np.mean(seconds):.1f} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samplers", default="amed,tpe,nsga2,random",
                        help="comma-separated from amed, tpe, nsga2, gp, random")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--gp-trials", type=int, default=40,
                        help="budget for GPSampler (4-15 s a trial here on 2 CPU cores)")
    parser.add_argument("--timing-trials", type=int, default=1000)
    parser.add_argument("--problem", choices=["bits", "mixed", "both"], default="both")
    parser.add_argument("--mixed-samplers", default="amed,tpe,cmaes,random",
                        help="comma-separated from amed, tpe, cmaes, gp, random")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = args.samplers.split(",")
    names, cycles = latency_table()
    if args.problem in ("mixed", "both"):
        mixed_table(names, cycles, args.mixed_samplers.split(","), args.seeds, args.trials,
                    args.gp_trials)
    if args.problem == "mixed":
        return
    print(f"ResNet-18: {len(names)} layers x {len(CHOICES)} widths, {args.seeds} seeds")
    rows = {}
    for name in samplers:
        budget = args.gp_trials if name == "gp" else args.trials
        if budget == 0:
            continue
        checkpoints = sorted({min(k, budget) for k in (40, 100)} | {budget})
        outcomes = {form: [] for form in ("single", "pareto")}
        for seed in range(args.seeds):
            problem = make_problem(names, cycles, seed)
            front = exact_front(problem)
            for form in outcomes:
                sampler = make_sampler(name, form, problem, seed)
                start = time.perf_counter()
                accuracy, latency = run_study(problem, form, sampler, budget)
                outcomes[form].append(evaluate(problem, front, accuracy, latency, checkpoints))
                print(f"  {name:7s} seed {seed} {form:6s} {time.perf_counter() - start:6.1f} s "
                      f"gap {outcomes[form][-1].gaps[budget]:.4f}")
        rows[name] = (budget, checkpoints, outcomes)
    timing = {
        name: sampler_ms_per_trial(make_problem(names, cycles, 0), name, args.timing_trials)
        for name in samplers if name != "gp" and args.timing_trials >= 100
    }
    print_table(rows, timing, args.timing_trials)


def _mean_std(values: Sequence[float], scale: float = 100.0) -> str:
    return f"{scale * np.mean(values):.2f} ± {scale * np.std(values):.2f}"


def print_table(rows: dict, timing: dict[str, float], timing_trials: int) -> None:
    """Print the results as a markdown table, then AMED's ratios to the others."""
    print()
    print("| sampler | trials | gap @40 (%) | gap @100 (%) | gap @end (%) | rel. gap @end (%) "
          f"| 2-obj gap @end (%) | 2-obj HV ratio (%) | ms/trial @{timing_trials} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (budget, checkpoints, outcomes) in rows.items():
        single, pareto = outcomes["single"], outcomes["pareto"]
        ms = f"{timing[name]:.2f}" if name in timing else "n/a"
        at_100 = _mean_std([o.gaps[100] for o in single]) if 100 in checkpoints else "n/a"
        print(f"| {name} | {budget} | {_mean_std([o.gaps[min(40, budget)] for o in single])} "
              f"| {at_100} | {_mean_std([o.gaps[budget] for o in single])} "
              f"| {_mean_std([o.relative_gap for o in single])} "
              f"| {_mean_std([o.gaps[budget] for o in pareto])} "
              f"| {_mean_std([o.hv_ratio for o in pareto])} | {ms} |")
    if "amed" not in rows:
        return
    amed_single = rows["amed"][2]["single"]
    print()
    for name, (budget, _, outcomes) in rows.items():
        if name == "amed" or budget not in amed_single[0].gaps:
            continue
        amed_gap = np.mean([o.gaps[budget] for o in amed_single])
        gap = np.mean([o.gaps[budget] for o in outcomes["single"]])
        line = f"- {name}: gap after {budget} trials {gap / max(amed_gap, 1e-12):.1f}x AMED's"
        if name in timing and "amed" in timing:
            line += f"; sampler time {timing[name] / timing['amed']:.1f}x AMED's"
        print(line)

if __name__ == "__main__":
    main()
