"""Step 5-6: fine-tune a candidate from the shared weights, test it, export and verify QONNX.

Several workers of one job share the fine-tuning (:func:`finetune_all`): each candidate is
claimed through a lock file, ``models/.<label>.lock``, and its result is the stored record.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging

from brevitas_amed.job.checkpoints import claim, load_or_none, save_atomic, write_text_atomic
from brevitas_amed.job.context import Job
from brevitas_amed.job.inputs import reseed
from brevitas_amed.job.progress import Progress
from brevitas_amed.job.records import Candidate, FinalModel, QonnxResult
from brevitas_amed.quant import export_qonnx, verify_qonnx
from brevitas_amed.quant import QuantizedModel
from brevitas_amed.training.device import out_of_memory_advice
from brevitas_amed.training.loops import evaluate, train

log = logging.getLogger("brevitas_amed")

MODELS = "models"


def finetune_key(job: Job, knob_bits: dict[str, int]) -> str:
    """Hash of what a fine-tuned model depends on; an equal key means it can be reused."""
    training = job.recipe.finetune.model_dump(include={"epochs", "lr", "distill", "distill_temperature"})
    payload = json.dumps({"bits": knob_bits, "finetune": training,
                          "export": job.recipe.export.model_dump()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def finetune_all(job: Job, candidates: list[Candidate], progress: Progress, wait: bool = True) -> list[FinalModel]:
    """Fine-tune and export every candidate, sharing the work with the job's other workers.

    A first pass takes each candidate no other worker is on; with ``wait``, a second pass waits
    for each of the others and loads its stored result (or trains it, when its worker died).

    Returns:
        The fine-tuned models in candidate order: all of them with ``wait``, else those this
        worker trained or found stored.
    """
    (job.out / MODELS).mkdir(exist_ok=True)
    done: dict[str, FinalModel] = {}
    for waiting in (False, True) if wait else (False,):
        for candidate in candidates:
            if candidate.label in done:
                continue
            with claim(job.out / MODELS / f".{candidate.label}.lock", wait=waiting) as held:
                if held:
                    done[candidate.label] = finetune_and_export(job, candidate, progress)
    return [done[c.label] for c in candidates if c.label in done]


def finetune_and_export(job: Job, candidate: Candidate, progress: Progress) -> FinalModel:
    """Fine-tune one allocation, evaluate it on val and test, export and verify it.

    The result is kept in ``models/<label>.json`` beside its checkpoint; a rerun with the same
    bits and settings returns the stored record instead of training again.
    """
    recipe, q = job.recipe, job.qmodel
    (job.out / MODELS).mkdir(exist_ok=True)
    record_path = job.out / MODELS / f"{candidate.label}.json"
    key = finetune_key(job, candidate.knob_bits)
    if record_path.is_file():
        stored = FinalModel.from_dict(json.loads(record_path.read_text()))
        if stored.key == key and load_or_none(job.out / stored.checkpoint) is not None:
            return dataclasses.replace(stored, **vars(candidate))  # the search's figures as they are now
    q.load_state_dict(job.base_state)
    q.set_knob_bits(candidate.knob_bits)
    ft = recipe.finetune
    reseed(job.loaders, recipe.seed)
    with progress(ft.epochs * len(job.loaders["train"]), f"fine-tune {candidate.label}") as bar, \
            out_of_memory_advice(f"fine-tuning {candidate.label}", job.device, recipe.data.batch_size):
        train(q, job.loaders["train"], epochs=ft.epochs, lr=ft.lr, progress=bar,
              teacher=job.float_model if ft.distill else None, temperature=ft.distill_temperature)
    q.eval()
    checkpoint = f"{MODELS}/{candidate.label}.pt"
    save_atomic(q.state_dict(), job.out / checkpoint)
    cycles = job.latency.cycles(candidate.knob_bits)
    final = FinalModel(**vars(candidate), key=key,
                       bits={layer: list(pair) for layer, pair in q.get_bits().items()},
                       val_accuracy=evaluate(q, job.loaders["val"]),
                       test_accuracy=evaluate(q, job.loaders["test"]),
                       latency_cycles=cycles,
                       latency_seconds=cycles / job.backend.profile.clock_hz,
                       latency_ratio=cycles / job.reference_latency,
                       per_layer_cycles=job.latency.per_layer(candidate.knob_bits),
                       size_bits=job.size_bits(candidate.knob_bits),
                       checkpoint=checkpoint)
    final.qonnx = export(job, candidate.label) if recipe.export.qonnx else None
    write_text_atomic(json.dumps(final.to_dict(), indent=1), record_path)
    return final


def cpu_copy(qmodel: QuantizedModel) -> QuantizedModel:
    """A copy of the model on the CPU, where export and qonnx run; the job's model stays put."""
    return copy.deepcopy(qmodel).cpu()


def export(job: Job, label: str) -> QonnxResult:
    """Export a CPU copy of the model at its current bits to ``models/<label>.onnx`` and check it
    with qonnx on CPU inputs."""
    x_all = next(iter(job.loaders["test"].loader))[0]  # the CPU batch, before it goes to the device
    relative = f"{MODELS}/{label}.onnx"
    model = cpu_copy(job.qmodel)
    path = export_qonnx(model, x_all[:1], job.out / relative)
    result = QonnxResult(path=relative)
    if job.recipe.export.verify:
        check = verify_qonnx(model, path, x_all[: job.recipe.export.verify_samples], job.recipe.export.tolerance)
        result = QonnxResult(path=relative, verified=check.passed, max_abs_diff=check.max_abs_diff,
                             output_step=check.output_step, same_predictions=check.same_predictions)
        if not check.passed:
            log.warning("%s: QONNX check failed: %s (end to end, the output differs from PyTorch by %.3g)", label,
                        check.mismatch or "output beyond tolerance", check.max_abs_diff)
    return result
