"""The job's inputs, checked before anything is written: data, loaders, backend, output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch.utils.data import DataLoader

import hw_backends
from brevitas_amed.job.checkpoints import write_text_atomic
from brevitas_amed.job.recipe import UNSTAMPED_SETTINGS, Recipe, RecipeError, dump_recipe
from brevitas_amed.training.data import DataSplits, digits, imagefolder, synthetic
from brevitas_amed.training.device import DeviceLoader, resolve_device


def load_data(recipe: Recipe) -> DataSplits:
    """The recipe's dataset, split train/val/test with the recipe's seed."""
    d = recipe.data
    if d.name == "digits":
        return digits(image_size=d.image_size, channels=d.channels, seed=recipe.seed)
    if d.name == "synthetic":
        shape = (d.channels, d.image_size or 16, d.image_size or 16)
        return synthetic(num_samples=d.synthetic_samples, input_shape=shape, seed=recipe.seed)
    return imagefolder(d.path, image_size=d.image_size or 224, seed=recipe.seed)


def job_device(recipe: Recipe, device: str | None = None) -> torch.device:
    """The device this process runs on: ``device`` (a worker's share) or the recipe's.

    Raises:
        RecipeError: CUDA asked for where there is none, or a CUDA index past the last device.
    """
    try:
        return resolve_device(device or recipe.device)
    except ValueError as exc:
        raise RecipeError(str(exc)) from None


def make_loaders(recipe: Recipe, data: DataSplits, device: torch.device | None = None) -> dict[str, DeviceLoader]:
    """``train`` (shuffled by a seeded generator), ``val`` and ``test`` loaders delivering batches on
    ``device``; on CUDA from pinned memory, copied without blocking."""
    device = device or torch.device("cpu")
    gen = torch.Generator().manual_seed(recipe.seed)
    kw = dict(batch_size=recipe.data.batch_size, num_workers=recipe.data.num_workers,
              pin_memory=device.type == "cuda")
    loaders = {"train": DataLoader(data.train, shuffle=True, drop_last=len(data.train) > recipe.data.batch_size,
                                   generator=gen, **kw),
               "val": DataLoader(data.val, shuffle=False, **kw),
               "test": DataLoader(data.test, shuffle=False, **kw)}
    return {name: DeviceLoader(loader, device) for name, loader in loaders.items()}


def reseed(loaders: dict[str, DeviceLoader], seed: int) -> None:
    """Same seed, same batches: a trial or fine-tune does not depend on what ran before it."""
    torch.manual_seed(seed)
    loaders["train"].generator.manual_seed(seed)


def make_backend(recipe: Recipe) -> hw_backends.Backend:
    """The recipe's latency backend on its hardware profile."""
    kwargs = {"cache": recipe.hardware.cache} if recipe.hardware.cache else {}
    return hw_backends.get(recipe.hardware.backend, profile=recipe.hardware.profile, **kwargs)


def same_setting(stored: Any, now: Any, defaults: dict[str, Any]) -> bool:
    """Whether a stamped section equals the current one. A setting the stamp lacks was added
    after the stamp was written: the same, as long as it is at the value that version ran with
    (``defaults``: see :func:`section_defaults`)."""
    if not (isinstance(stored, dict) and isinstance(now, dict)):
        return stored == now
    missing = object()
    return (set(stored) <= set(now) and all(stored[k] == now[k] for k in stored)
            and all(now[k] == defaults.get(k, missing) for k in set(now) - set(stored)))


def section_defaults(recipe: Recipe, section: str) -> dict[str, Any]:
    """What a stamp that lacks a field of one recipe section ran with: the field's default, or the
    value it had before its default changed (``UNSTAMPED_SETTINGS``)."""
    value = getattr(recipe, section, None)
    if not isinstance(value, BaseModel):
        return {}
    defaults = {name: field.get_default(call_default_factory=True) for name, field in type(value).model_fields.items()}
    return {**defaults, **UNSTAMPED_SETTINGS.get(section, {})}


def differences(previous: dict[str, Any], current: dict[str, Any], changed: list[str], recipe: Recipe) -> list[str]:
    """``key=stored value`` for each setting of the ``changed`` sections where the stamp differs."""
    out = []
    for section in changed:
        was, now = previous[section], current.get(section)
        if not (isinstance(was, dict) and isinstance(now, dict)):
            out.append(f"{section}={was!r}")
            continue
        defaults = section_defaults(recipe, section)
        out += [f"{section}.{k}={was.get(k, defaults.get(k))!r}" for k in sorted(set(was) | set(now))
                if was.get(k, defaults.get(k)) != now.get(k)]
    return out


def prepare_output_dir(recipe: Recipe) -> Path:
    """Create the output directory; refuse to resume a study made by an incompatible recipe.

    Several workers may call this at once (under the job's lock): files are replaced atomically.

    Raises:
        RecipeError: The folder holds a study made with other search-affecting settings.
    """
    out = Path(recipe.output_dir)
    stamp = out / "recipe.json"
    current = recipe.search_affecting()
    if stamp.is_file():
        previous = json.loads(stamp.read_text()).get("search_affecting") or {}
        # what the stamp lacks was not recorded by the version that wrote it: not a change, as long
        # as a setting added since keeps the value that version ran with (section_defaults)
        changed = sorted(k for k in previous
                         if not same_setting(previous[k], current.get(k), section_defaults(recipe, k)))
        if changed:
            stored = differences(previous, current, changed, recipe)
            raise RecipeError(f"output_dir {str(out)!r} holds a study made with different {', '.join(changed)} settings "
                              f"(the study's: {', '.join(stored[:3])}{', ...' if len(stored) > 3 else ''}); set those to "
                              f"resume it, or set output_dir to a new folder (or delete this one) to start over")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(dump_recipe(recipe), out / "recipe.yaml")
    write_text_atomic(json.dumps({"search_affecting": current}, indent=1, default=str), stamp)
    return out
