"""Tiny job settings shared by the job tests: real data, real Brevitas, seconds per job."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna

from brevitas_amed.job.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
TINY = ["hardware.backend=analytic", "search.trials=4", "search.warmup_epochs=1", "search.adapt_steps=2",
        "model.pretrain.epochs=2", "finetune.epochs=1", "finetune.top_k=2", "finetune.baselines=[8, 4]",
        "export.verify_samples=4", "threads=1"]


def tiny_recipe(out, *extra):
    return load_recipe(None, TINY + [f"output_dir={out}", *extra])


def copy_run(src: Path, dst: Path) -> Path:
    """A private copy of a finished run, so a test that changes it leaves others alone."""
    shutil.copytree(src, dst)
    return dst


def cli_process(out: Path, *extra: str, cwd: Path, flags: tuple[str, ...] = ("-q",), log: Path | None = None,
                tiny: list[str] = TINY) -> subprocess.Popen:
    """``brevitas-amed recipe -q`` (or other ``flags``) with the tiny settings in a real process;
    stderr goes to ``log`` when given (readable while the process runs)."""
    args = [sys.executable, "-m", "brevitas_amed", "recipe", *flags]
    for item in tiny + [f"output_dir={out}", *extra]:
        args += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    stderr = subprocess.PIPE if log is None else open(log, "w")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=cwd)


def trials_of(out: Path, name: str = "digits", storage: "str | optuna.storages.BaseStorage | None" = None) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=storage or f"sqlite:///{out / 'study.db'}").trials
    except Exception:  # the study does not exist yet
        return []


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Poll ``condition()`` each half second until true; fail if ``proc`` ends or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            err = proc.stderr.read()[-2000:] if proc.stderr else ""
            raise AssertionError(f"process ended early ({proc.returncode}): {err}")
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("condition not reached in time")


def completed(trials) -> set[int]:
    return {t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
