"""Step 1: the job's float model, loaded from the output folder or trained once."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from brevitas_amed.job.checkpoints import load_or_none, save_atomic
from brevitas_amed.job.progress import Progress
from brevitas_amed.job.recipe import Recipe
from brevitas_amed.training.loops import train

log = logging.getLogger("brevitas_amed")

FILE = "float_model.pt"


def float_model(recipe: Recipe, model: nn.Module, train_loader, out: Path, progress: Progress) -> nn.Module:
    """Load ``out/float_model.pt``, or train ``model`` from scratch once (when the recipe gives no
    weights and ``model.pretrain.epochs > 0``) and save it there. Returns the model in eval mode."""
    path = out / FILE
    state = load_or_none(path)
    if state is not None:
        model.load_state_dict(state)
        log.info("float model: loaded %s", path)
        return model.eval()
    pretrain = recipe.model.pretrain
    if recipe.model.weights is None and pretrain.epochs > 0:
        torch.manual_seed(recipe.seed)
        with progress(pretrain.epochs * len(train_loader), "train float model") as bar:
            train(model, train_loader, epochs=pretrain.epochs, lr=pretrain.lr, progress=bar)
    save_atomic(model.state_dict(), path)
    log.info("float model: made %s", path)
    return model.eval()
