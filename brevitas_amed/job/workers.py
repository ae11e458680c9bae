"""Local search workers: the processes ``brevitas-amed recipe R --workers N`` starts beside itself.

Each helper is ``brevitas-amed recipe <resolved recipe> --join`` on its own device (one GPU each,
round-robin, when the recipe's device is ``auto`` or ``cuda``); it shares the study through the
recipe's storage and the float model and shared weights through the output directory, searches
until the shared trial budget is spent, and exits. The launching process fine-tunes and reports.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from brevitas_amed.job.checkpoints import write_text_atomic
from brevitas_amed.job.inputs import job_device
from brevitas_amed.job.recipe import Recipe, dump_recipe
from brevitas_amed.training.device import cuda_count, worker_devices

log = logging.getLogger("brevitas_amed")

FOLDER = "workers"


@dataclasses.dataclass
class Helper:
    """A helper worker process and where its log goes."""

    device: str
    process: subprocess.Popen
    log_path: Path


def local_devices(recipe: Recipe, workers: int) -> list[str]:
    """The device of each of ``workers`` local workers (the launching process first), all checked.

    Raises:
        RecipeError: A device this machine does not have.
    """
    devices = worker_devices(recipe.device, workers, cuda_count())
    for device in set(devices):
        job_device(recipe, device)
    return devices


def start_helpers(recipe: Recipe, out: Path, devices: list[str], quiet: bool = False) -> list[Helper]:
    """Start one ``--join`` worker per device; each logs to ``out/workers/<pid>-<i>.log``."""
    if not devices:
        return []
    folder = out / FOLDER
    folder.mkdir(exist_ok=True)
    recipe_path = folder / f"recipe-{os.getpid()}.yaml"
    write_text_atomic(dump_recipe(recipe), recipe_path)
    helpers = []
    for i, device in enumerate(devices, start=1):
        log_path = folder / f"{os.getpid()}-{i}.log"
        args = [sys.executable, "-m", "brevitas_amed", "recipe", str(recipe_path), "--join",
                "--set", f"device={device}"] + (["-q"] if quiet else [])
        with open(log_path, "w") as sink:
            process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT)
        helpers.append(Helper(device, process, log_path))
    log.info("started %d helper workers (pids %s); logs in %s", len(helpers),
             ", ".join(str(h.process.pid) for h in helpers), folder)
    return helpers


def wait_for_helpers(helpers: list[Helper]) -> None:
    """Wait until every helper has exited; say which did not end well (their trials are then
    failed by the heartbeat and retried, or run by the launching process)."""
    for helper in helpers:
        code = helper.process.wait()
        if code == 0:
            continue
        if code < 0:
            log.warning("helper worker %d on %s was killed (signal %d); its running trial is failed and "
                        "retried once its heartbeat lapses", helper.process.pid, helper.device, -code)
        else:
            lines = helper.log_path.read_text(errors="replace").strip().splitlines()
            log.warning("helper worker %d on %s exited with code %d: %s", helper.process.pid, helper.device, code,
                        lines[-1] if lines else "no output")


def stop_helpers(helpers: list[Helper], grace_s: float = 10, timeout_s: float = 60) -> None:
    """End helpers still running (the launching process is ending early): a few seconds to end on
    their own (Ctrl-C in a terminal reaches them too), then an interrupt, after which each fails its
    own running trial and exits; a helper that still does not end is killed."""
    deadline = time.time() + grace_s
    while any(h.process.poll() is None for h in helpers) and time.time() < deadline:
        time.sleep(0.2)
    alive = [h for h in helpers if h.process.poll() is None]
    for helper in alive:
        helper.process.send_signal(signal.SIGINT)
    for helper in alive:
        try:
            helper.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            helper.process.kill()
            helper.process.wait()
