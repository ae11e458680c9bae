"""The job's inputs, checked before anything is written: data, loaders, backend, output folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import hw_backends
from brevitas_amed.job.recipe import Recipe, RecipeError, dump_recipe
from brevitas_amed.training.data import DataSplits, digits, imagefolder, synthetic


def load_data(recipe: Recipe) -> DataSplits:
    """The recipe's dataset, split train/val/test with the recipe's seed."""
    d = recipe.data
    if d.name == "digits":
        return digits(image_size=d.image_size, channels=d.channels, seed=recipe.seed)
    if d.name == "synthetic":
        shape = (d.channels, d.image_size or 16, d.image_size or 16)
        return synthetic(num_samples=d.synthetic_samples, input_shape=shape, seed=recipe.seed)
    return imagefolder(d.path, image_size=d.image_size or 224, seed=recipe.seed)


def make_loaders(recipe: Recipe, data: DataSplits) -> dict[str, DataLoader]:
    """``train`` (shuffled by a seeded generator), ``val`` and ``test`` loaders."""
    gen = torch.Generator().manual_seed(recipe.seed)
    kw = dict(batch_size=recipe.data.batch_size, num_workers=recipe.data.num_workers)
    return {"train": DataLoader(data.train, shuffle=True, drop_last=len(data.train) > recipe.data.batch_size,
                                generator=gen, **kw),
            "val": DataLoader(data.val, shuffle=False, **kw),
            "test": DataLoader(data.test, shuffle=False, **kw)}


def reseed(loaders: dict[str, DataLoader], seed: int) -> None:
    """Same seed, same batches: a trial or fine-tune does not depend on what ran before it."""
    torch.manual_seed(seed)
    loaders["train"].generator.manual_seed(seed)


def make_backend(recipe: Recipe) -> hw_backends.Backend:
    """The recipe's latency backend on its hardware profile."""
    kwargs = {"cache": recipe.hardware.cache} if recipe.hardware.cache else {}
    return hw_backends.get(recipe.hardware.backend, profile=recipe.hardware.profile, **kwargs)


def prepare_output_dir(recipe: Recipe) -> Path:
    """Create the output directory; refuse to resume a study made by an incompatible recipe.

    Raises:
        RecipeError: The folder holds a study made with other search-affecting settings.
    """
    out = Path(recipe.output_dir)
    stamp = out / "recipe.json"
    current = recipe.search_affecting()
    if stamp.is_file():
        previous = json.loads(stamp.read_text()).get("search_affecting") or {}
        # a section the stamp lacks was not recorded by the version that wrote it: not a change
        changed = sorted(k for k in previous if previous[k] != current.get(k))
        if changed:
            raise RecipeError(f"output_dir {str(out)!r} holds a study made with different {', '.join(changed)} settings; "
                              f"set output_dir to a new folder (or delete this one) to start over")
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(dump_recipe(recipe))
    stamp.write_text(json.dumps({"search_affecting": current}, indent=1, default=str))
    return out


def check_storage(recipe: Recipe) -> None:
    """Fail before anything is written when ``search.storage`` is no usable database URL.

    Raises:
        RecipeError: The URL does not parse or names a database driver that is not installed.
    """
    url = recipe.search.storage
    if url is None:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(f"search.storage={url!r} is not a usable database URL ({first}); give an SQLAlchemy URL "
                          f"such as sqlite:///study.db or postgresql+psycopg://user@host/db, or null for "
                          f"output_dir/study.db") from None
