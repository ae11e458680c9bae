"""Checkpoints and records that survive a kill at any moment: written to a temporary file and
renamed into place, read back with a check, and redone when unreadable. Files that several workers
make once (the float model, the shared weights) are made under a lock on the output directory."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Iterator

import torch
from filelock import FileLock, Timeout

log = logging.getLogger("brevitas_amed")


def temporary(path: Path) -> Path:
    """A temporary name beside ``path``, private to this process."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def save_atomic(state: dict, path: Path) -> None:
    """``torch.save`` to ``path`` so that ``path`` is either the old file or the whole new one."""
    tmp = temporary(path)
    torch.save(state, tmp)
    os.replace(tmp, path)


def write_text_atomic(text: str, path: Path) -> None:
    tmp = temporary(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def load_or_none(path: Path) -> dict | None:
    """The state_dict in ``path``; ``None`` (and a warning) when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        log.warning("%s is unreadable (%s); it will be made again", path, str(exc).splitlines()[0] if str(exc) else exc)
        return None
    if not isinstance(state, dict):
        log.warning("%s holds no state_dict; it will be made again", path)
        return None
    return state


LOCK_FILE = ".job.lock"


@contextlib.contextmanager
def claim(path: Path, wait: bool) -> Iterator[bool]:
    """Hold the lock file ``path`` for the block and yield ``True``; without ``wait``, yield
    ``False`` at once when another process holds it. The operating system releases the lock when
    its holder dies (kill -9)."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


@contextlib.contextmanager
def output_lock(out: Path, what: str) -> Iterator[None]:
    """Hold the output directory's lock (``out/.job.lock``) for the block; a worker that finds it
    held says so and waits. The operating system releases it when its holder dies (kill -9).

    On a file system shared by several machines the lock needs one that supports file locks
    (NFSv4 does).
    """
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another worker to finish %s (%s)", what, out / LOCK_FILE)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
