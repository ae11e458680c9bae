"""Everything up to the search, built once and shared by the search, fine-tuning and compare."""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

import hw_backends
from brevitas_amed.job.checkpoints import output_lock
from brevitas_amed.job.float_model import float_model
from brevitas_amed.job.inputs import job_device, load_data, make_backend, make_loaders, prepare_output_dir
from brevitas_amed.job.progress import Progress
from brevitas_amed.job.recipe import Recipe, RecipeError
from brevitas_amed.job.records import Accuracy
from brevitas_amed.job.shared_weights import policy_of, shared_quantized_model
from brevitas_amed.job.storage import check_storage
from brevitas_amed.quant import LatencyTable, QuantizedModel, quantize
from brevitas_amed.search import QualityScore
from brevitas_amed.training.data import DataSplits
from brevitas_amed.training.device import DeviceLoader, out_of_memory_advice
from brevitas_amed.training.loops import evaluate
from brevitas_amed.training.models import build_model

log = logging.getLogger("brevitas_amed")


@dataclasses.dataclass
class Job:
    """The job's shared state: data, the float and quantized models, the latency table, the score.

    Attributes:
        device: Where the models live and the loaders deliver batches.
        base_state: The shared weights; every trial and fine-tune starts from them.
        latency: Per-layer cycles of every bit pair the knobs can take, from the recipe's backend.
        quality: AMED's quality score (threshold from the float model's validation accuracy).
    """

    recipe: Recipe
    out: Path
    data: DataSplits
    loaders: dict[str, DeviceLoader]
    float_model: nn.Module
    qmodel: QuantizedModel
    base_state: dict[str, torch.Tensor]
    workload: hw_backends.Workload
    backend: hw_backends.Backend
    latency: LatencyTable
    float_accuracy: Accuracy
    quality: QualityScore
    device: torch.device

    @property
    def reference_latency(self) -> int:
        """Cycles of the uniform 8-bit model."""
        return self.latency.reference

    def size_bits(self, knob_bits: Mapping[str, int]) -> int:
        return self.qmodel.weight_size_bits(knob_bits)

    def search_space(self) -> dict[str, tuple[int, ...]]:
        """``{knob: bit choices}`` the samplers search, in execution order: with
        ``search.bit_choices: latency_levels`` the widest choice of each latency level
        (:meth:`~brevitas_amed.quant.LatencyTable.widest_per_level`; weights keep every width under a
        size limit), else every choice. A knob may be left with one choice."""
        if self.recipe.search.bit_choices == "all":
            return self.qmodel.search_space()
        return dict(self._latency_levels)

    @functools.cached_property
    def _latency_levels(self) -> dict[str, tuple[int, ...]]:
        # computed once per job: the allocation of every trial reads it
        return self.latency.widest_per_level(self.qmodel.search_space(), weights=self.quality.max_size_bits is None)


def build_job(recipe: Recipe, progress: Progress, device: str | None = None,
              on_prepared: Callable[[Path], None] | None = None) -> Job:
    """Validated inputs first (a bad recipe writes nothing), then the float model, the shared
    weights, the latency table and the quality score.

    Several workers may build the same job at once: the first makes the float model, the shared
    weights and the latency table under the output directory's lock; the others wait and load them.

    Args:
        device: This worker's device (``cuda:1``), instead of the recipe's ``device``.
        on_prepared: Called with the output directory once the recipe is checked and the
            directory prepared, before the long steps (to start helper workers early).
    """
    random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    dev = job_device(recipe, device)
    data = load_data(recipe)
    model = build_model(recipe.model.name, data.num_classes, in_channels=data.input_shape[0], weights=recipe.model.weights)
    backend = make_backend(recipe)
    check_storage(recipe)
    check_size_limit(recipe, model)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    with output_lock(Path(recipe.output_dir), "the float model and shared weights"), \
            out_of_memory_advice("preparing the job", dev, recipe.data.batch_size):
        out = prepare_output_dir(recipe)
        if on_prepared is not None:
            on_prepared(out)
        loaders = make_loaders(recipe, data, dev)
        fmodel = float_model(recipe, model.to(dev), loaders["train"], out, progress)
        float_acc = Accuracy(val=evaluate(fmodel, loaders["val"]), test=evaluate(fmodel, loaders["test"]))
        log.info("float model on %s: val %.2f%%, test %.2f%%", dev, 100 * float_acc.val, 100 * float_acc.test)
        qmodel, base_state = shared_quantized_model(recipe, fmodel, loaders["train"], out, progress)
        workload = qmodel.cpu().workload(data.input_shape, name=recipe.model.name)  # traced on the CPU
        qmodel.to(dev)
        log.info("latency table: %d layers on %s/%s", len(workload), recipe.hardware.backend, backend.profile.name)
        latency = LatencyTable(qmodel, workload, backend, progress=True)
    quality = make_quality(recipe, float_acc.val, latency.reference)
    return Job(recipe, out, data, loaders, fmodel, qmodel, base_state, workload, backend, latency, float_acc, quality,
               dev)


def make_quality(recipe: Recipe, float_val_acc: float, reference: int) -> QualityScore:
    """The recipe's quality score; the accuracy floor follows the float model when given as a drop."""
    qc = recipe.quality
    threshold = qc.accuracy_threshold
    if threshold is None and qc.max_accuracy_drop is not None:
        threshold = max(0.0, float_val_acc - qc.max_accuracy_drop)
    size = qc.size_limit_kb * 8192 if qc.size_limit_kb else None
    return QualityScore(beta=qc.beta, reference_latency=reference, accuracy_threshold=threshold,
                        penalty=qc.penalty, max_size_bits=size)


def check_size_limit(recipe: Recipe, model: nn.Module) -> None:
    """Fail before anything is written when no allocation fits ``quality.size_limit_kb``.

    Raises:
        RecipeError: Even the smallest allocation is over the limit.
    """
    limit_kb = recipe.quality.size_limit_kb
    if not limit_kb:
        return
    qmodel = quantize(model, policy_of(recipe))  # knobs depend on the architecture, not the weights
    smallest = qmodel.weight_size_bits({k: min(c) for k, c in qmodel.search_space().items()
                                        if qmodel.knobs[k].kind == "weight"})
    if smallest > limit_kb * 8192:
        raise RecipeError(f"quality.size_limit_kb={limit_kb}: even the smallest allocation needs "
                          f"{smallest / 8192:.1f} KB; raise the limit or allow fewer weight bits")
