"""Checkpoints and records that survive a kill at any moment: written to a temporary file and
renamed into place, read back with a check, and redone when unreadable."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path

import torch

log = logging.getLogger("brevitas_amed")


def save_atomic(state: dict, path: Path) -> None:
    """``torch.save`` to ``path`` so that ``path`` is either the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def write_text_atomic(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
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
