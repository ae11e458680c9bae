"""Activation scales from data, through Brevitas' calibration mode."""

from __future__ import annotations

import itertools
from typing import Iterable, Iterator

import torch
from torch import nn

from brevitas.graph.calibrate import calibration_mode

from brevitas_amed.quant.model import QuantizedModel

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def input_batches(data: Iterable | None, max_batches: int) -> Iterator[torch.Tensor]:
    """The inputs of the first ``max_batches`` batches of ``data`` (targets dropped), lazily.

    Args:
        data: Iterable of input batches or ``(inputs, targets)`` pairs (a DataLoader).
        max_batches: How many batches at most.

    Yields:
        Input tensors.

    Raises:
        ValueError: ``max_batches`` below 1, or ``data`` yielded no batch (raised when iterated).
    """
    if max_batches < 1:
        raise ValueError(f"max_batches must be at least 1, got {max_batches}")
    seen = 0
    for batch in itertools.islice(() if data is None else data, max_batches):
        seen += 1
        yield batch[0] if isinstance(batch, (tuple, list)) else batch
    if seen == 0:
        raise ValueError("the data yielded no batch; pass a non-empty DataLoader")


def calibrate(qmodel: QuantizedModel, data, max_batches: int = 8, train_mode: bool = True) -> None:
    """Initialise activation scales from data (weights initialise from their own statistics).

    Args:
        qmodel: The model from :func:`~brevitas_amed.quant.quantize`.
        data: Iterable of input batches or ``(inputs, targets)`` pairs (a DataLoader).
        max_batches: How many batches to average statistics over.
        train_mode: Calibrate with BatchNorm in the mode the model will next run in: ``True``
            before quantization-aware training (the default), ``False`` before eval-only use.
            BatchNorm running statistics are restored afterwards either way.

    Raises:
        ValueError: ``data`` yielded no batch.
    """
    norms = {n: m for n, m in qmodel.named_modules() if isinstance(m, _BATCH_NORMS) and m.track_running_stats}
    bn_state = {n: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                for n, m in norms.items()}
    # Brevitas' calibration mode saves and restores each quantizer's ``observer_only`` flag per
    # proxy; a quantizer shared by two proxies (the inputs of a concatenation) is saved after the
    # first proxy has set it, and stays an observer that no longer quantizes. Restore it here.
    observers = {m: m.observer_only for m in qmodel.modules() if hasattr(m, "observer_only")}
    was_training = qmodel.training
    qmodel.train(train_mode)
    try:
        with torch.no_grad(), calibration_mode(qmodel.model):
            if not train_mode:
                _freeze_batch_norms(qmodel)
            for x in input_batches(data, max_batches):
                qmodel(x)
    finally:
        for module, flag in observers.items():
            module.observer_only = flag
        for n, (mean, var, count) in bn_state.items():
            norms[n].running_mean.copy_(mean)
            norms[n].running_var.copy_(var)
            norms[n].num_batches_tracked.copy_(count)
        qmodel.train(was_training)
    with torch.no_grad():  # initialise weight scales from weight statistics now, not mid-training
        qmodel.train(True)
        _freeze_batch_norms(qmodel)
        qmodel(x[:1])
        qmodel.train(was_training)


def _freeze_batch_norms(qmodel: QuantizedModel) -> None:
    qmodel.model.apply(lambda m: m.eval() if isinstance(m, _BATCH_NORMS) else None)
