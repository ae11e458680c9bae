"""Step 2: quantize, calibrate and train one set of weights for every bit allocation at once."""

from __future__ import annotations

import copy
import logging
import random
from pathlib import Path

import torch
from torch import nn

from brevitas_amed.job.checkpoints import load_or_none, save_atomic
from brevitas_amed.job.progress import Progress
from brevitas_amed.job.recipe import Recipe
from brevitas_amed.quant import QuantizedModel, QuantPolicy, calibrate, quantize
from brevitas_amed.training.device import model_device
from brevitas_amed.training.loops import random_bits_sampler, train

log = logging.getLogger("brevitas_amed")

FILE = "shared_quant.pt"


def policy_of(recipe: Recipe) -> QuantPolicy:
    """The recipe's quantization section as a :class:`QuantPolicy`."""
    q = recipe.quantization
    return QuantPolicy(weight_bits=tuple(q.weight_bits), act_bits=tuple(q.act_bits), first_layer=q.first_layer,
                       last_layer=q.last_layer, per_channel_weights=q.per_channel_weights, init_bits=max(q.weight_bits))


def shared_quantized_model(recipe: Recipe, fmodel: nn.Module, train_loader, out: Path,
                           progress: Progress) -> tuple[QuantizedModel, dict[str, torch.Tensor]]:
    """The quantized model with its shared weights, and a copy of its state to reset trials to.

    The first run calibrates, trains ``search.warmup_epochs`` epochs at random bits every batch
    (one-shot: all widths share the weights) and saves ``out/shared_quant.pt``; later runs load it.
    Both models end on ``fmodel``'s device (the graph is rewritten on the CPU).
    """
    q = recipe.quantization
    device = model_device(fmodel)
    qmodel = quantize(fmodel.cpu(), policy_of(recipe)).to(device)
    fmodel.to(device)
    path = out / FILE
    state = load_or_none(path)
    if state is not None:
        calibrate(qmodel, train_loader, max_batches=1)  # create scale parameters, then overwrite them
        qmodel.load_state_dict(state)
        log.info("shared weights: loaded %s", path)
    else:
        torch.manual_seed(recipe.seed)
        calibrate(qmodel, train_loader, max_batches=q.calibration_batches, train_mode=True)
        epochs = recipe.search.warmup_epochs
        if epochs:
            with progress(epochs * len(train_loader), "shared-weight QAT") as bar:
                train(qmodel, train_loader, epochs=epochs, lr=recipe.search.adapt_lr,
                      bit_sampler=random_bits_sampler(qmodel, random.Random(recipe.seed)), progress=bar)
        qmodel.set_uniform(max(q.weight_bits), max(q.act_bits))
        save_atomic(qmodel.state_dict(), path)
        log.info("shared weights: made %s", path)
    return qmodel.eval(), copy.deepcopy(qmodel.state_dict())
