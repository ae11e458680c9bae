"""Local search workers: the processes ``brevitas-amed recipe R --workers N`` starts beside itself.

Each helper is ``brevitas-amed recipe <resolved recipe> --join`` on its own device (one GPU each,
round-robin, when the recipe's device is ``auto`` or ``cuda``); it shares the study through the
recipe's storage and the float model and shared weights through the output directory, searches
until the shared trial budget is spent, takes its share of the fine-tuning (on a storage with a
heartbeat) and exits. The launching process waits for every model and reports.

Helpers start first, before the launcher's own heavy imports, so that both import at once. A
helper checks the recipe exactly as the launcher does and writes nothing before its checks pass:
until then its output goes to an unnamed temporary file, and once the output directory is
prepared it switches to ``output_dir/workers/<launcher pid>-<i>.log`` (:func:`log_to_folder`).
This module imports no torch, so that launching costs nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from brevitas_amed.job.recipe import Recipe, dump_recipe

log = logging.getLogger("brevitas_amed")

FOLDER = "workers"


@dataclasses.dataclass
class Helper:
    """A helper worker process, its log once its output directory is prepared, and what it wrote before."""

    slot: str
    process: subprocess.Popen
    log_name: str
    early_output: IO[bytes]


@dataclasses.dataclass
class Helpers:
    """The helpers of one launch and the temporary recipe file they read."""

    members: list[Helper] = dataclasses.field(default_factory=list)
    recipe_path: str | None = None
    ended: bool = False  # waited for, and any that ended badly reported


@dataclasses.dataclass(frozen=True)
class Slot:
    """A helper's place among the local workers: number ``index`` of ``count`` (the launcher is 0)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Slot":
        index, _, count = text.partition("/")
        slot = cls(int(index), int(count))
        if not 0 < slot.index < slot.count:
            raise ValueError(f"worker slot {text!r}: expected I/N with 0 < I < N")
        return slot

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def local_devices(recipe: Recipe, workers: int) -> list[str]:
    """The device of each of ``workers`` local workers (the launching process first), all checked.

    Raises:
        RecipeError: A device this machine does not have.
    """
    from brevitas_amed.job.inputs import job_device  # torch: only once the helpers are on their way
    from brevitas_amed.training.device import cuda_count
    from brevitas_amed.training.device_spec import worker_devices

    devices = worker_devices(recipe.device, workers, cuda_count())
    for device in set(devices):
        job_device(recipe, device)
    return devices


def slot_device(recipe: Recipe, slot: Slot) -> str:
    """The device of the helper in ``slot``: its share of the recipe's device, as :func:`local_devices`."""
    return local_devices(recipe, slot.count)[slot.index]


def start_helpers(recipe: Recipe, helpers: int, quiet: bool = False) -> Helpers:
    """Start ``helpers`` ``--join`` workers, slots 1..helpers of helpers + 1 (this process is slot 0).

    The resolved recipe goes to a temporary file (not the output directory, which nothing may
    touch before the recipe is checked); :func:`stop_helpers` removes it.
    """
    if helpers < 1:
        return Helpers()
    fd, recipe_path = tempfile.mkstemp(prefix="brevitas-amed-recipe-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(dump_recipe(recipe))
    started = Helpers(recipe_path=recipe_path)
    for i in range(1, helpers + 1):
        slot, name = Slot(i, helpers + 1), f"{os.getpid()}-{i}"
        args = [sys.executable, "-m", "brevitas_amed", "recipe", recipe_path, "--join", "--worker-slot", str(slot),
                "--worker-log", name] + (["-q"] if quiet else [])
        early = tempfile.TemporaryFile()
        process = subprocess.Popen(args, stdout=early, stderr=subprocess.STDOUT)
        started.members.append(Helper(str(slot), process, name, early))
    log.info("started %d helper workers (pids %s); their logs go to output_dir/%s once the recipe is checked",
             helpers, ", ".join(str(h.process.pid) for h in started.members), FOLDER)
    return started


def log_to_folder(out: Path, name: str) -> Path:
    """Send this process's stdout and stderr to ``out/workers/<name>.log`` (a helper, once its
    output directory is prepared). Returns the log's path."""
    folder = out / FOLDER
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.log"
    sys.stdout.flush()
    sys.stderr.flush()
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), sys.stdout.fileno())
        os.dup2(sink.fileno(), sys.stderr.fileno())
    return path


def last_line(helper: Helper, out: Path | None) -> str:
    """The last line the helper wrote: in its log if it got that far, else in its early output."""
    path = out / FOLDER / f"{helper.log_name}.log" if out is not None else None
    if path is not None and path.exists():
        text = path.read_text(errors="replace")
    else:
        helper.early_output.seek(0)
        text = helper.early_output.read().decode(errors="replace")
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no output"


def wait_for_helpers(helpers: Helpers, out: Path) -> None:
    """Wait until every helper has exited; say which did not end well (their trials are then
    failed by the heartbeat and retried, or run by the launching process). Reports once."""
    if helpers.ended:
        return
    helpers.ended = True
    for helper in helpers.members:
        code = helper.process.wait()
        if code == 0:
            continue
        if code < 0:
            log.warning("helper worker %d (slot %s) was killed (signal %d); its running trial is failed and "
                        "retried once its heartbeat lapses", helper.process.pid, helper.slot, -code)
        else:
            log.warning("helper worker %d (slot %s) exited with code %d: %s", helper.process.pid, helper.slot, code,
                        last_line(helper, out))


def stop_helpers(helpers: Helpers, grace_s: float = 10, timeout_s: float = 60) -> None:
    """End helpers still running (the launching process is ending early): a few seconds to end on
    their own (Ctrl-C in a terminal reaches them too; a helper whose recipe check fails ends by
    itself), then an interrupt, after which each fails its own running trial and exits; a helper
    that still does not end is killed. Then the temporary recipe file is removed."""
    members = helpers.members
    deadline = time.time() + grace_s
    while any(h.process.poll() is None for h in members) and time.time() < deadline:
        time.sleep(0.2)
    alive = [h for h in members if h.process.poll() is None]
    for helper in alive:
        helper.process.send_signal(signal.SIGINT)
    for helper in alive:
        try:
            helper.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            helper.process.kill()
            helper.process.wait()
    for helper in members:
        helper.early_output.close()
    if helpers.recipe_path is not None:
        Path(helpers.recipe_path).unlink(missing_ok=True)
