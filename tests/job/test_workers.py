"""Many workers, one study, as users run them: ``--workers 2`` on SQLite with one worker killed by
kill -9 mid-trial, a ``--join`` worker that arrives before the shared weights exist (journal
storage), and two workers on a real PostgreSQL server (study and latency cache) from pgserver."""

from __future__ import annotations

import datetime
import json
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from filelock import FileLock

from brevitas_amed.job.checkpoints import LOCK_FILE
from tests.job.tiny import TINY, cli_process, completed, trials_of, wait_for

pytestmark = pytest.mark.slow

# trials of ~1 s (a kill lands inside one), a quick heartbeat, two models to fine-tune
SETTINGS = ["search.adapt_steps=10", "search.heartbeat_s=1", "finetune.top_k=1", "finetune.baselines=[8]"]
State = optuna.trial.TrialState


def worker_pids(trials) -> set[int]:
    return {int(t.user_attrs["worker"].split()[0].rpartition(":")[2]) for t in trials if "worker" in t.user_attrs}


def running_for(trial) -> float:
    """Seconds since a trial started (Optuna stores local wall-clock time)."""
    return (datetime.datetime.now() - trial.datetime_start).total_seconds()


def test_kill_9_of_one_worker_mid_trial_loses_nothing_and_the_job_reports(tmp_path):
    out = tmp_path / "run"  # new: the helper starts while the launcher makes the shared weights
    proc = cli_process(out, "search.trials=12", *SETTINGS, cwd=tmp_path, flags=("-q", "--workers", "2"))
    orphans: list[int] = []
    before: list[int] = []

    def helper_killed_mid_trial() -> bool:
        helpers = worker_pids(t for t in trials_of(out) if t.state == State.RUNNING) - {proc.pid}
        for pid in helpers:
            try:
                os.kill(pid, signal.SIGSTOP)  # frozen: its trial cannot end between the look and the kill
            except ProcessLookupError:  # that helper has just finished
                continue
            # a short lock wait: frozen inside a write, the helper would hold every reader and
            # writer (and its heartbeat would lapse) for as long as this read waited
            trials = trials_of(out, storage=optuna.storages.RDBStorage(
                f"sqlite:///{out / 'study.db'}", engine_kwargs={"connect_args": {"timeout": 0.5}}))
            # in its objective for a while: Optuna's first heartbeat, written as the objective
            # starts, is in (a trial killed before it would never be failed by a heartbeat)
            running = [t.number for t in trials if t.state == State.RUNNING and worker_pids([t]) == {pid}
                       and running_for(t) > 0.2]
            if running:
                os.kill(pid, signal.SIGKILL)
                orphans[:], before[:] = running, sorted(completed(trials))
                return True
            os.kill(pid, signal.SIGCONT)
        return False

    wait_for(helper_killed_mid_trial, proc, timeout=240)
    (pid,) = {int(w.split()[0].rpartition(":")[2]) for t in trials_of(out) if t.number in orphans
              for w in [t.user_attrs["worker"]]}
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"helper worker {pid} (slot 1/2) was killed (signal 9)" in stderr
    trials = trials_of(out)
    assert set(before) <= completed(trials)  # nothing completed before the kill is lost
    assert State.RUNNING not in {t.state for t in trials}
    for number in orphans:  # failed once its heartbeat lapsed, and its parameters run again
        assert trials[number].state == State.FAIL
        retries = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
                   == number]
        # the retry repeats what the killed trial had drawn: all its parameters, or the first few when
        # it was killed while drawing them (the rest are drawn afresh); killed before it drew any, an
        # enqueued start allocation is retried with those (a sampled trial has none to repeat)
        expected = trials[number].params or trials[number].system_attrs.get("fixed_params") or {}
        assert len(retries) == 1 and expected.items() <= retries[0].params.items()
        assert retries[0].state == State.COMPLETE
    assert len(completed(trials)) >= 12 and {proc.pid, pid} <= worker_pids(trials)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] >= 12 and (out / "report.md").is_file() and "report:" in stdout


def test_a_joining_worker_that_arrives_before_the_shared_weights_waits_and_loads_them(tmp_path):
    out = tmp_path / "run"
    storage = f"journal:{tmp_path / 'study.journal'}"
    settings = ["search.trials=10", f"search.storage={storage}", *SETTINGS]
    logs = {name: tmp_path / f"{name}.log" for name in ("join", "main")}
    out.mkdir()
    with FileLock(str(out / LOCK_FILE)):  # as if a first worker were still making the shared weights
        joiner = cli_process(out, *settings, cwd=tmp_path, flags=("--join",), log=logs["join"])
        wait_for(lambda: "waiting for another worker" in logs["join"].read_text(), joiner)
        main = cli_process(out, *settings, cwd=tmp_path, flags=(), log=logs["main"])
        wait_for(lambda: "waiting for another worker" in logs["main"].read_text(), main)
    stdout, _ = main.communicate(timeout=300)
    assert main.returncode == 0, logs["main"].read_text()[-2000:]
    assert joiner.wait(timeout=300) == 0, logs["join"].read_text()[-2000:]
    text = {name: path.read_text() for name, path in logs.items()}
    made = [name for name in text if "float model: made" in text[name]]
    assert len(made) == 1 and "shared weights: made" in text[made[0]]  # made once, by whoever got the lock
    other = "main" if made == ["join"] else "join"
    assert "float model: loaded" in text[other] and "shared weights: loaded" in text[other]
    assert "worker done: " in joiner.stdout.read() and "report:" in stdout
    trials = trials_of(out, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.journal"))))
    assert len(completed(trials)) >= 10 and State.RUNNING not in {t.state for t in trials}
    assert {main.pid, joiner.pid} <= worker_pids(trials)


def test_two_workers_share_a_study_and_latency_cache_on_postgresql(postgres, tmp_path):
    out = tmp_path / "run"
    tiny = [s for s in TINY if not s.startswith("hardware.backend")]  # SCALE-Sim: it caches its latencies
    proc = cli_process(out, "search.trials=12", *SETTINGS, f"search.storage={postgres}", f"hardware.cache={postgres}",
                       cwd=tmp_path, flags=("-q", "--workers", "2"), tiny=tiny)
    stdout, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 0, stderr
    trials = trials_of(out, storage=postgres)
    assert len(completed(trials)) >= 12 and State.RUNNING not in {t.state for t in trials}
    assert len(worker_pids(trials)) == 2  # both workers ran trials
    assert not (out / "study.db").exists()
    with sa.create_engine(postgres).connect() as conn:
        assert conn.execute(sa.text("select count(*) from latency")).scalar_one() > 0
    assert json.loads((out / "summary.json").read_text())["trials"] >= 12 and "report:" in stdout
    (log,) = (out / "workers").glob(f"{proc.pid}-1.log")  # the helper's own log, once its recipe passed
    assert "worker done:" in log.read_text()


def test_a_bad_recipe_with_two_workers_writes_nothing_and_leaves_no_helper(tmp_path):
    """Helpers start before the launcher's checks; they check the same recipe and write nothing."""
    out = tmp_path / "run"
    before = set(tmp_path.iterdir())
    proc = cli_process(out, "search.storage=nosuchdb://x", cwd=tmp_path, flags=("-q", "--workers", "3"))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "search.storage" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists() and set(tmp_path.iterdir()) == before
    marker = f"--worker-log\0{proc.pid}-".encode()  # a helper's command line names its launcher
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if marker in _read(p)]  # every helper has ended


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process has just ended
        return b""


def test_the_final_wait_ends_for_a_trial_that_never_had_a_heartbeat(tmp_path, caplog):
    """A worker killed between creating its trial and its first heartbeat leaves a RUNNING trial
    that Optuna never fails: the launcher waits for it a while, then goes on and leaves it alone."""
    from brevitas_amed.job.search import wait_for_running

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1)
    study = optuna.create_study(storage=storage)
    done = optuna.trial.create_trial(value=1.0)  # a completed trial of 0.1 s, on any machine
    done.datetime_start = done.datetime_complete - datetime.timedelta(seconds=0.1)
    study.add_trial(done)
    orphan = study.ask()  # RUNNING, and no heartbeat thread ever started for it
    started = time.time()
    with caplog.at_level("WARNING", logger="brevitas_amed"):
        wait_for_running(study, heartbeat_s=0.2, poll_s=0.1)
    # Ten typical trials (1 s) and ten heartbeats (2 s).
    assert 2.9 < time.time() - started < 10
    assert f"trials [{orphan.number}] have run for over 3 s; going on without them" in caplog.text
    assert study.trials[orphan.number].state == State.RUNNING


def test_journal_urls_name_a_file():
    from pathlib import Path

    from brevitas_amed.job.storage import journal_path

    assert journal_path("journal:runs/study.journal") == Path("runs/study.journal")
    assert journal_path("journal:///data/study.journal") == Path("/data/study.journal")
    assert journal_path("sqlite:///study.db") is None


def test_a_worker_waits_out_another_workers_sqlite_write_lock_past_the_drivers_5_s(tmp_path):
    """A worker stalled inside a write (swapped out, stopped) holds SQLite's lock; the others wait
    for it, as they do for the latency cache, instead of failing after the driver's 5 s."""
    import sqlite3
    import threading

    from brevitas_amed.job.storage import make_storage
    from tests.job.tiny import tiny_recipe

    out = tmp_path / "run"
    out.mkdir()
    study = optuna.create_study(study_name="s", storage=make_storage(tiny_recipe(out), out))
    trial = study.ask()
    writer = sqlite3.connect(out / "study.db", isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # the stalled worker's write lock
    threading.Timer(6.5, lambda: writer.execute("COMMIT")).start()
    started = time.monotonic()
    study.tell(trial, 1.0)  # Optuna retries creating a trial, not telling one
    assert time.monotonic() - started > 6
    assert [t.state for t in study.trials] == [State.COMPLETE]
    writer.close()
