"""Interrupted jobs as users interrupt them: kill -9 in the search and in fine-tuning, Ctrl-C, a
truncated checkpoint, a run moved from a GPU to a CPU; each followed by a rerun that finishes with
nothing lost or redone."""

from __future__ import annotations

import contextlib
import datetime
import json
import signal
import struct
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch

from brevitas_amed.job import search
from brevitas_amed.job.progress import no_progress
from brevitas_amed.job.run import run
from brevitas_amed.training.device import cuda_count
from tests.job.tiny import cli_process, completed, copy_run, tiny_recipe, trials_of, wait_for

pytestmark = pytest.mark.slow


def test_kill_9_during_search_then_rerun_keeps_every_completed_trial(tmp_path):
    out = tmp_path / "run"
    # Killed inside a trial's objective (long trials: 100 adaptation steps), where Optuna's heartbeat
    # runs. A worker killed while Optuna samples a new trial, before its first heartbeat, leaves a
    # trial RUNNING that no heartbeat will ever fail (README, "Running the same command again").
    proc = cli_process(out, "search.trials=400", "search.heartbeat_s=1", "search.adapt_steps=100", cwd=tmp_path)

    def in_objective() -> bool:
        trials = trials_of(out)
        # in its objective for a while: Optuna's first heartbeat, written as it starts, is in
        return len(completed(trials)) >= 3 and any(
            t.state == optuna.trial.TrialState.RUNNING and "worker" in t.user_attrs
            and (datetime.datetime.now() - t.datetime_start).total_seconds() > 0.2 for t in trials)

    def killed_in_objective() -> bool:
        if not in_objective():
            return False
        proc.send_signal(signal.SIGSTOP)  # frozen: its trial cannot end between the look and the kill
        if in_objective():
            proc.send_signal(signal.SIGKILL)
            return True
        proc.send_signal(signal.SIGCONT)
        return False

    wait_for(killed_in_objective, proc)
    proc.wait(timeout=60)
    before = completed(trials_of(out))
    time.sleep(2.5)  # the killed worker's heartbeat lapses (grace: 2 x 1 s)
    summary = run(tiny_recipe(out, f"search.trials={len(before) + 2}", "search.heartbeat_s=1", "search.adapt_steps=100"),
                  progress=None)
    trials = trials_of(out)
    assert before <= completed(trials)
    assert optuna.trial.TrialState.RUNNING not in {t.state for t in trials}
    assert summary.trials >= len(before) + 2 and (out / "report.md").is_file()


def test_kill_9_during_finetuning_then_rerun_keeps_finished_models(tmp_path):
    out = tmp_path / "run"
    proc = cli_process(out, "finetune.epochs=4", "finetune.top_k=1", cwd=tmp_path)
    first = out / "models" / "uniform-8.json"  # fine-tuned after the search's one candidate
    wait_for(lambda: any((out / "models").glob("amed-t*.json")) if (out / "models").is_dir() else False, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done = sorted((out / "models").glob("*.json"))
    stamps = {p.name: (p.with_suffix(".pt").stat().st_mtime_ns) for p in done}
    trials = len(completed(trials_of(out)))
    summary = run(tiny_recipe(out, "finetune.epochs=4", "finetune.top_k=1"), progress=None)
    for name, stamp in stamps.items():  # finished before the kill: not trained again
        assert (out / "models" / name).with_suffix(".pt").stat().st_mtime_ns == stamp, name
    assert first.is_file() and len(summary.finals) == 3
    assert len(completed(trials_of(out))) == trials  # the search was done: no trial repeated


@contextlib.contextmanager
def ctrl_c_reaches_children():
    """SIGINT as a terminal delivers it, whatever pytest was started with: a pytest started in the
    background by a non-interactive shell (``pytest &`` in a script) ignores SIGINT, and a child
    inherits an ignored signal, so Python in it never raises KeyboardInterrupt. A handled signal
    is reset to its default in a child."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_then_rerun_finishes_the_same_study(tmp_path):
    out = tmp_path / "run"
    with ctrl_c_reaches_children():
        proc = cli_process(out, "search.trials=400", cwd=tmp_path)
    wait_for(lambda: len(completed(trials_of(out))) >= 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("brevitas-amed: interrupted")
    trials = trials_of(out)
    assert optuna.trial.TrialState.RUNNING not in {t.state for t in trials}
    before = completed(trials)
    summary = run(tiny_recipe(out, f"search.trials={len(before) + 1}"), progress=None)
    assert before <= completed(trials_of(out)) and summary.trials == len(before) + 1


def ctrl_c_on_trial(n: int):
    """A function that sends this process SIGINT on its ``n``-th call."""
    calls = []

    def maybe_interrupt():
        calls.append(None)
        if len(calls) == n:
            signal.raise_signal(signal.SIGINT)

    return maybe_interrupt


@pytest.mark.parametrize("where", ["objective", "ask", "tell", "callback"])
def test_ctrl_c_anywhere_in_the_search_stops_it_and_strands_no_trial(where, monkeypatch):
    """Optuna fails a trial whose objective raises KeyboardInterrupt; one raised while it asks for
    the next trial left that trial RUNNING, and one raised while it stores a result escaped as an
    UnboundLocalError (exit code 2, not 130). Wherever it lands, the search now stops before
    another trial, keeps every finished trial and raises KeyboardInterrupt."""
    interrupt = ctrl_c_on_trial(3)
    if where == "ask":
        ask = optuna.Study.ask

        def asking(self, *args, **kwargs):
            trial = ask(self, *args, **kwargs)
            interrupt()
            return trial

        monkeypatch.setattr(optuna.Study, "ask", asking)
    elif where == "callback":
        monkeypatch.setattr(search, "best_quality", lambda study: interrupt())

    def objective(trial):
        x = trial.suggest_int("x", 0, 7)
        if where == "objective":
            interrupt()
        trial.set_user_attr("quality", float(x))
        return float(x), 1.0

    monkeypatch.setattr(search, "make_objective", lambda job: objective)
    monkeypatch.setattr(search, "search_params", lambda job: {"x": list(range(8))})
    job = SimpleNamespace(recipe=SimpleNamespace(search=SimpleNamespace(trials=50, sampler="random", timeout_s=None, bit_choices="all")))
    class Storage(optuna.storages.InMemoryStorage):
        def set_trial_state_values(self, trial_id, state, values=None):
            if where == "tell":  # while Optuna stores a finished trial's result
                interrupt()
            return super().set_trial_state_values(trial_id, state, values)

    study = optuna.create_study(storage=Storage(), directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    with ctrl_c_reaches_children(), pytest.raises(KeyboardInterrupt):
        search.search_pass(job, study, no_progress())
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 2 and len(states) <= 4, states


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    run(tiny_recipe(out, "device=cpu"), progress=None)  # CPU checkpoints, on a GPU machine too
    return out


def test_truncated_checkpoints_are_redone_not_loaded(finished, tmp_path, caplog):
    out = copy_run(finished, tmp_path / "run")
    for name in ("float_model.pt", "shared_quant.pt", "models/uniform-8.pt"):
        data = (out / name).read_bytes()
        (out / name).write_bytes(data[: len(data) // 2])  # what a kill during a plain write leaves
    untouched = (out / "models" / "uniform-4.pt").stat().st_mtime_ns
    with caplog.at_level("WARNING", logger="brevitas_amed"):
        summary = run(tiny_recipe(out), progress=None)
    assert "float_model.pt is unreadable" in caplog.text and "uniform-8.pt is unreadable" in caplog.text
    assert summary.float_accuracy.test > 0.8
    assert (out / "models" / "uniform-4.pt").stat().st_mtime_ns == untouched
    record = json.loads((out / "models" / "uniform-8.json").read_text())
    assert (out / record["checkpoint"]).stat().st_size > len(data) // 2


def test_rerun_reloads_the_float_model_and_shared_weights(finished, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    stamps = {n: (out / n).stat().st_mtime_ns for n in ("float_model.pt", "shared_quant.pt")}
    first = json.loads((finished / "summary.json").read_text())
    again = run(tiny_recipe(out, "device=cpu"), progress=None)  # the fixture's device: the same accuracy
    assert {n: (out / n).stat().st_mtime_ns for n in stamps} == stamps
    assert again.float_accuracy.test == first["float_accuracy"]["test"]


def retag(path: Path, location: str = "cuda:0") -> None:
    """Make a checkpoint read as one saved from ``location``, as a run on a GPU writes it."""
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info.filename)) for info in src.infolist()]
    old = b"X" + struct.pack("<I", 3) + b"cpu"
    new = b"X" + struct.pack("<I", len(location)) + location.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info, data in entries:
            if info.filename.endswith("/data.pkl"):
                assert old in data
                data = data.replace(old, new)
            dst.writestr(info, data)


def test_checkpoints_saved_on_a_gpu_resume_on_the_cpu(finished, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    names = ("float_model.pt", "shared_quant.pt", "models/uniform-8.pt")
    if not cuda_count():  # made to read as saved on a GPU: a plain load refuses them here
        for name in names:
            retag(out / name)
        with pytest.raises(RuntimeError, match="on a CUDA device"):
            torch.load(out / "float_model.pt", weights_only=True)
    # (on a GPU machine the reverse: the CPU checkpoints resume on the GPU)
    stamps = {n: (out / n).stat().st_mtime_ns for n in names}
    again = run(tiny_recipe(out, "device=auto"), progress=None)  # on a GPU where there is one: the reverse
    assert {n: (out / n).stat().st_mtime_ns for n in names} == stamps  # loaded, not made again
    before = json.loads((finished / "summary.json").read_text())["float_accuracy"]["test"]
    assert abs(again.float_accuracy.test - before) <= 2 / 360  # same weights (a GPU may round one image)
