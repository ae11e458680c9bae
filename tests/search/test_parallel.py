"""One chain under parallel workers: threads, and processes sharing one journal file.

On a grid whose energies soon become known, the chain moves through the energy cache between
trials and the state stored with each trial is a sample of exp(-E/T). Parallel workers must keep
that distribution as close to exact (total-variation distance) as a single worker does.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna

from brevitas_amed.search import AMEDSampler
from brevitas_amed.search._record import read_record

optuna.logging.set_verbosity(optuna.logging.WARNING)

REPO = Path(__file__).resolve().parents[2]
ENERGY = {(i, j): 0.7 * (i - 1) ** 2 + 0.4 * j for i in range(3) for j in range(4)}
N_TRIALS = 1600
BURN_IN = 50
# Over 1,550 correlated samples on 12 states: 200 seeds of one worker gave mean 0.034, standard
# deviation 0.008, largest 0.057; 60 runs of four threads 0.034, 0.008, 0.050; 100 runs of two
# processes 0.036, 0.008, 0.065. The bound is 6.5 deviations above the mean. The same chain
# without the Hastings correction at the grid's borders: 0.18 to 0.19.
TV_BOUND = 0.09


def objective(trial: optuna.Trial) -> float:
    return ENERGY[trial.suggest_int("i", 0, 2), trial.suggest_int("j", 0, 3)]


def _sampler(seed: int) -> AMEDSampler:
    return AMEDSampler(seed=seed, temperature=1.0, max_moves_per_trial=5)


def _total_variation(trials: list[optuna.trial.FrozenTrial]) -> float:
    records = [r for r in (read_record(t) for t in trials) if r is not None]
    records.sort(key=lambda r: r.seq)
    states = [r.state for r in records[BURN_IN:]]
    weights = {s: math.exp(-e) for s, e in ENERGY.items()}
    total = sum(weights.values())
    return 0.5 * sum(abs(states.count(s) / len(states) - w / total) for s, w in weights.items())


def test_one_worker_samples_boltzmann_distribution() -> None:
    study = optuna.create_study(sampler=_sampler(0))
    study.optimize(objective, n_trials=N_TRIALS)
    assert _total_variation(study.trials) < TV_BOUND


def test_four_threads_keep_the_distribution() -> None:
    study = optuna.create_study(sampler=_sampler(0))
    study.optimize(objective, n_trials=N_TRIALS, n_jobs=4)
    assert _total_variation(study.trials) < TV_BOUND
    records = [read_record(t) for t in study.trials]
    # Trials sampled before any trial finished come from the independent sampler: at most one per
    # worker, at the start. Every later trial carries the chain, and no two share a step.
    assert all(i < 4 for i, r in enumerate(records) if r is None)
    present = [r for r in records if r is not None]
    assert len({r.seq for r in present}) == len(present) >= N_TRIALS - 4  # one chain, never forked


_WORKER = textwrap.dedent(
    """
    import sys

    import optuna
    from brevitas_amed.search import AMEDSampler

    sys.path.insert(0, sys.argv[3])
    from test_parallel import objective

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(sys.argv[1])
    )
    sampler = AMEDSampler(seed=int(sys.argv[2]), temperature=1.0, max_moves_per_trial=5)
    study = optuna.load_study(study_name="shared", storage=storage, sampler=sampler)
    study.optimize(objective, n_trials=int(sys.argv[4]))
    """
)


def test_two_processes_on_one_journal_keep_the_distribution(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="shared", storage=storage)
    # Every energy known first. A state in flight is unknown to the chain, which then moves as if
    # it were not there; with trials of microseconds, Optuna's journal file lock (exponential
    # back-off up to 1 s) can hold one process for seconds while the other runs hundreds of
    # trials, and the state it evaluates is missed all that time (2 runs in 115 here, up to 0.106).
    for state in ENERGY:
        study.enqueue_trial(dict(zip("ij", state)))
    study.optimize(objective, n_trials=len(ENERGY))
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    here = str(Path(__file__).parent)
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), str(seed), here, str(N_TRIALS // 2)],
            env=env, stderr=subprocess.PIPE, text=True,
        )
        for seed in (0, 1)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert len(trials) == len(ENERGY) + N_TRIALS
    assert _total_variation(trials) < TV_BOUND
