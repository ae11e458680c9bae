"""Training and evaluation loops shared by the pipeline and the strategies."""

from __future__ import annotations

import itertools
import random
from typing import Iterable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from brevitas_amed.training.device import model_device, to_device


def evaluate(model: nn.Module, loader: Iterable, max_batches: Optional[int] = None) -> float:
    """Top-1 accuracy in [0, 1] (eval mode; restores the previous mode), on the model's device."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    correct = total = 0
    with torch.no_grad():
        for x, y in itertools.islice(loader, max_batches):
            x, y = to_device((x, y), device)
            correct += (model(x).argmax(dim=1) == y).sum().item()
            total += y.numel()
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluation data is empty; check the data split sizes")
    return correct / total


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with the learned quantizer scales in their own group (no weight decay on them)."""
    scales = [p for n, p in model.named_parameters() if "scaling_impl" in n]
    scale_ids = {id(p) for p in scales}
    weights = [p for p in model.parameters() if id(p) not in scale_ids]
    groups = [{"params": weights, "weight_decay": 1e-5}]
    if scales:
        groups.append({"params": scales, "weight_decay": 0.0})
    return torch.optim.Adam(groups, lr=lr)


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float, alpha: float = 0.5) -> torch.Tensor:
    """Cross-entropy mixed with KL to the teacher's softened distribution (Hinton et al.)."""
    ce = nn.functional.cross_entropy(logits, targets)
    kl = nn.functional.kl_div(nn.functional.log_softmax(logits / temperature, dim=1),
                              nn.functional.softmax(teacher_logits / temperature, dim=1),
                              reduction="batchmean") * temperature ** 2
    return (1 - alpha) * ce + alpha * kl


def train(model: nn.Module, loader: DataLoader, epochs: int = 1, lr: float = 1e-3, steps: Optional[int] = None,
          teacher: Optional[nn.Module] = None, temperature: float = 2.0, bit_sampler=None,
          progress=None) -> None:
    """Train with Adam and a cosine schedule, for ``epochs`` or exactly ``steps`` batches, on the
    model's device (batches are moved there; a :class:`DeviceLoader` already delivers them there).

    Args:
        teacher: Distil from this model's logits when given.
        bit_sampler: Called before every batch (e.g. to draw random bits for shared-weight
            training of all bit widths at once).
        progress: A tqdm bar advanced once per batch.
    """
    total = steps if steps is not None else epochs * len(loader)
    if total <= 0:
        return
    opt = make_optimizer(model, lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    model.train()
    if teacher is not None:
        teacher.eval()
    device = model_device(model)
    done = 0
    while done < total:
        for x, y in loader:
            x, y = to_device((x, y), device)
            if bit_sampler is not None:
                bit_sampler()
            logits = model(x)
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(x)
                loss = distillation_loss(logits, t_logits, y, temperature)
            else:
                loss = nn.functional.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if progress is not None:
                progress.update(1)
            if done >= total:
                break


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, loader: Iterable, batches: int) -> None:
    """Recompute every batch-norm layer's running statistics from ``batches`` batches (a
    cumulative average), the rest of the model in eval mode; the model ends in eval mode.

    (Brevitas' ``norm_correction_mode`` rescales the old statistics towards the new ones instead,
    and leaves the momentum unset.)
    """
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS)]
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    device = model_device(model)
    try:
        for x, _ in itertools.islice(loader, batches):
            model(to_device(x, device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()


def random_bits_sampler(qmodel, rng: random.Random):
    """A ``bit_sampler`` that sets every searchable knob to a random allowed width."""
    space = qmodel.search_space()

    def draw() -> None:
        qmodel.set_knob_bits({k: rng.choice(choices) for k, choices in space.items()})

    return draw
