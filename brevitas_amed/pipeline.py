"""The end-to-end job: recipe -> float model -> quantized model -> search -> fine-tune -> export.

Every step leaves its result in the output directory, so running the same recipe again resumes:
the float model, the shared quantized weights and the Optuna study are reused, completed
trials are not repeated, and fine-tuned models whose bits and settings match are not retrained.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch.utils.data import DataLoader

import hw_backends
from brevitas_amed.data import DataSplits, digits, imagefolder, synthetic
from brevitas_amed.models import build_model
from brevitas_amed.quantize import QuantizedModel, QuantPolicy, calibrate, quantize
from brevitas_amed.recipe import Recipe, RecipeError, dump_recipe
from brevitas_amed.strategies import layer_bits
from brevitas_amed.training import evaluate, random_bits_sampler, train

log = logging.getLogger("brevitas_amed")

WEIGHT_PREFIX, ACT_PREFIX = "w:", "a:"


# --- parameters <-> knobs -----------------------------------------------------------------------
def param_name(knob) -> str:
    return WEIGHT_PREFIX + knob.name if knob.kind == "weight" else ACT_PREFIX + knob.name.removeprefix("act:")


def knob_name(param: str) -> str:
    return param[len(WEIGHT_PREFIX):] if param.startswith(WEIGHT_PREFIX) else "act:" + param[len(ACT_PREFIX):]


# --- the job's shared state -------------------------------------------------------------------------
@dataclasses.dataclass
class Job:
    recipe: Recipe
    out: Path
    data: DataSplits
    loaders: dict[str, DataLoader]
    float_model: torch.nn.Module
    qmodel: QuantizedModel
    base_state: dict[str, torch.Tensor]
    workload: hw_backends.Workload
    backend: Any
    table: dict[str, dict[tuple[int, int], Any]]
    float_accuracy: dict[str, float]
    reference_latency: int
    quality: Any

    def latency(self, knob_bits: dict[str, int]) -> int:
        bits = layer_bits(self.qmodel, knob_bits)
        return sum(self.table[layer][pair].cycles for layer, pair in bits.items())

    def per_layer_latency(self, knob_bits: dict[str, int]) -> dict[str, int]:
        bits = layer_bits(self.qmodel, knob_bits)
        return {layer: self.table[layer][pair].cycles for layer, pair in bits.items()}

    def size_bits(self, knob_bits: dict[str, int]) -> int:
        return self.qmodel.weight_size_bits(knob_bits)


# --- steps -------------------------------------------------------------------------------------------
def load_data(recipe: Recipe) -> DataSplits:
    d = recipe.data
    if d.name == "digits":
        return digits(image_size=d.image_size, channels=d.channels, seed=recipe.seed)
    if d.name == "synthetic":
        shape = (d.channels, d.image_size or 16, d.image_size or 16)
        return synthetic(num_samples=d.synthetic_samples, input_shape=shape, seed=recipe.seed)
    return imagefolder(d.path, image_size=d.image_size or 224, seed=recipe.seed)


def make_loaders(recipe: Recipe, data: DataSplits) -> dict[str, DataLoader]:
    gen = torch.Generator().manual_seed(recipe.seed)
    kw = dict(batch_size=recipe.data.batch_size, num_workers=recipe.data.num_workers)
    return {"train": DataLoader(data.train, shuffle=True, drop_last=len(data.train) > recipe.data.batch_size, generator=gen, **kw),
            "val": DataLoader(data.val, shuffle=False, **kw),
            "test": DataLoader(data.test, shuffle=False, **kw)}


def make_backend(recipe: Recipe):
    kwargs = {"cache": recipe.hardware.cache} if recipe.hardware.cache else {}
    return hw_backends.get(recipe.hardware.backend, profile=recipe.hardware.profile, **kwargs)


def prepare_output_dir(recipe: Recipe) -> Path:
    """Create the output directory; refuse to resume a study made by an incompatible recipe."""
    out = Path(recipe.output_dir)
    stamp = out / "recipe.json"
    current = recipe.search_affecting()
    if stamp.is_file():
        previous = json.loads(stamp.read_text()).get("search_affecting")
        if previous != current:
            changed = sorted(k for k in set(previous or {}) | set(current) if (previous or {}).get(k) != current.get(k))
            raise RecipeError(f"output_dir {str(out)!r} holds a study made with different {', '.join(changed)} settings; "
                              f"set output_dir to a new folder (or delete this one) to start over")
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(dump_recipe(recipe))
    stamp.write_text(json.dumps({"search_affecting": current}, indent=1, default=str))
    return out


def float_model(recipe: Recipe, model: torch.nn.Module, loaders, out: Path, progress) -> torch.nn.Module:
    """Load the job's float model, or train it from scratch once (built-in models)."""
    path = out / "float_model.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    if recipe.model.weights is None and recipe.model.pretrain.epochs > 0:
        torch.manual_seed(recipe.seed)
        steps = recipe.model.pretrain.epochs * len(loaders["train"])
        with progress(total=steps, desc="train float model") as bar:
            train(model, loaders["train"], epochs=recipe.model.pretrain.epochs, lr=recipe.model.pretrain.lr, progress=bar)
    torch.save(model.state_dict(), path)
    return model.eval()


def shared_quantized_model(recipe: Recipe, fmodel, loaders, out: Path, progress) -> tuple[QuantizedModel, dict]:
    """Quantize, calibrate, and train the shared weights at random bits (one-shot, all widths)."""
    q = recipe.quantization
    policy = QuantPolicy(weight_bits=tuple(q.weight_bits), act_bits=tuple(q.act_bits), first_layer=q.first_layer,
                         last_layer=q.last_layer, per_channel_weights=q.per_channel_weights, init_bits=max(q.weight_bits))
    qmodel = quantize(fmodel, policy)
    path = out / "shared_quant.pt"
    if path.is_file():
        calibrate(qmodel, loaders["train"], max_batches=1)  # create scale parameters, then overwrite them
        qmodel.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        torch.manual_seed(recipe.seed)
        calibrate(qmodel, loaders["train"], max_batches=q.calibration_batches, train_mode=True)
        epochs = recipe.search.warmup_epochs
        if epochs:
            with progress(total=epochs * len(loaders["train"]), desc="shared-weight QAT") as bar:
                train(qmodel, loaders["train"], epochs=epochs, lr=recipe.search.adapt_lr,
                      bit_sampler=random_bits_sampler(qmodel, random.Random(recipe.seed)), progress=bar)
        qmodel.set_uniform(max(q.weight_bits), max(q.act_bits))
        torch.save(qmodel.state_dict(), path)
    return qmodel.eval(), copy.deepcopy(qmodel.state_dict())


def build_job(recipe: Recipe, progress) -> Job:
    """Everything up to the search: validated inputs first, so a bad recipe writes nothing."""
    random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    data = load_data(recipe)
    model = build_model(recipe.model.name, data.num_classes, in_channels=data.input_shape[0], weights=recipe.model.weights)
    backend = make_backend(recipe)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    out = prepare_output_dir(recipe)
    loaders = make_loaders(recipe, data)
    fmodel = float_model(recipe, model, loaders, out, progress)
    float_acc = {"val": evaluate(fmodel, loaders["val"]), "test": evaluate(fmodel, loaders["test"])}
    log.info("float model: val %.2f%%, test %.2f%%", 100 * float_acc["val"], 100 * float_acc["test"])
    qmodel, base_state = shared_quantized_model(recipe, fmodel, loaders, out, progress)
    workload = qmodel.workload(data.input_shape, name=recipe.model.name)
    q = recipe.quantization
    fixed = {k.fixed for k in qmodel.knobs.values() if k.fixed is not None}
    table = latency_table(backend, workload, sorted(set(q.weight_bits) | fixed | {8}), sorted(set(q.act_bits) | fixed | {8}))
    reference = sum(table[layer][(8, 8)].cycles for layer in workload.names)
    quality = make_quality(recipe, float_acc["val"], reference, qmodel)
    return Job(recipe, out, data, loaders, fmodel, qmodel, base_state, workload, backend, table, float_acc,
               reference, quality)


def latency_table(backend, workload, weight_bits, act_bits):
    log.info("latency table: %d layers x %d bit pairs on %s/%s", len(workload), len(weight_bits) * len(act_bits),
             getattr(backend, "name", type(backend).__name__), backend.profile.name)
    return backend.layer_table(workload, weight_bits, act_bits, progress=True)


def make_quality(recipe: Recipe, float_val_acc: float, reference: int, qmodel: QuantizedModel):
    from brevitas_amed.quality import QualityScore

    qc = recipe.quality
    threshold = qc.accuracy_threshold
    if threshold is None and qc.max_accuracy_drop is not None:
        threshold = max(0.0, float_val_acc - qc.max_accuracy_drop)
    size = qc.size_limit_kb * 8192 if qc.size_limit_kb else None
    if size is not None:
        smallest = qmodel.weight_size_bits({k: min(c) for k, c in qmodel.search_space().items() if qmodel.knobs[k].kind == "weight"})
        if smallest > size:
            raise RecipeError(f"quality.size_limit_kb={qc.size_limit_kb}: even the smallest allocation needs "
                              f"{smallest / 8192:.1f} KB; raise the limit or allow fewer weight bits")
    return QualityScore(beta=qc.beta, reference_latency=reference, accuracy_threshold=threshold,
                        penalty=qc.penalty, max_size_bits=size)


# --- search -------------------------------------------------------------------------------------------
def make_sampler(recipe: Recipe, job: Job):
    import optuna

    s = recipe.search
    if s.sampler == "amed":
        from brevitas_amed.sampler import AMEDSampler, GeometricAnnealing

        constraint = None
        if job.quality.max_size_bits is not None:
            constraint = _size_constraint(job)
        cooling = GeometricAnnealing(initial=s.temperature_start, final=s.temperature_end, n_trials=s.trials)
        return AMEDSampler(seed=recipe.seed, scalarization=job.quality, constraint=constraint, temperature=cooling)
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=recipe.seed, multivariate=True)
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=recipe.seed, population_size=min(20, max(4, s.trials // 5)))
    return optuna.samplers.RandomSampler(seed=recipe.seed)


def _size_constraint(job: Job) -> Callable[[dict], bool]:
    def fits(params: dict) -> bool:
        knob_bits = {knob_name(p): v for p, v in params.items()}
        return job.size_bits(knob_bits) <= job.quality.max_size_bits

    return fits


def storage_url(recipe: Recipe, out: Path) -> str:
    return recipe.search.storage or f"sqlite:///{(out / 'study.db').resolve()}"


def open_study(recipe: Recipe, job: Job, sampler=None):
    import optuna

    return optuna.create_study(storage=storage_url(recipe, job.out), study_name=recipe.search.study_name or recipe.name,
                               directions=["maximize", "minimize"], sampler=sampler or make_sampler(recipe, job),
                               load_if_exists=True)


def _fail_interrupted_trials(study) -> int:
    """Trials left RUNNING by a killed run cannot finish; mark them failed so the study is consistent."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(stale)


def estimate_accuracy(job: Job, knob_bits: dict[str, int], seed: int) -> float:
    """Short QAT at the proposed bits from the shared weights, then validation accuracy."""
    s = job.recipe.search
    q = job.qmodel
    q.load_state_dict(job.base_state)
    q.set_knob_bits(knob_bits)
    if s.adapt_steps:
        _reseed(job, seed)
        train(q, job.loaders["train"], steps=s.adapt_steps, lr=s.adapt_lr)
    return evaluate(q, job.loaders["val"], s.eval_batches)


def _reseed(job: Job, seed: int) -> None:
    """Same seed, same batches: a trial or fine-tune does not depend on what ran before it."""
    torch.manual_seed(seed)
    job.loaders["train"].generator.manual_seed(seed)


def make_objective(job: Job):
    import optuna

    space = job.qmodel.search_space()
    params = {param_name(job.qmodel.knobs[k]): list(choices) for k, choices in space.items()}

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        knob_bits = {knob_name(p): trial.suggest_categorical(p, choices) for p, choices in params.items()}
        size = job.size_bits(knob_bits)
        latency = job.latency(knob_bits)
        trial.set_user_attr("size_bits", size)
        trial.set_user_attr("latency_cycles", latency)
        job.quality.check_size(size)  # over the limit: pruned before any accuracy is computed
        accuracy = estimate_accuracy(job, knob_bits, job.recipe.seed + trial.number)
        trial.set_user_attr("quality", job.quality.score(accuracy, latency))
        return accuracy, float(latency)

    return objective, params


def run_search(job: Job, progress) -> Any:
    import optuna
    from optuna.trial import TrialState

    recipe = job.recipe
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are reported below, in one line
    study = open_study(recipe, job)
    stale = _fail_interrupted_trials(study)
    if stale:
        log.info("marked %d interrupted trial(s) as failed", stale)
    objective, params = make_objective(job)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    if not study.trials:
        study.enqueue_trial({p: max(c) for p, c in params.items()})  # the chain starts at uniform max bits
    remaining = max(0, recipe.search.trials - done)
    log.info("search: %s sampler, %d trials done, %d to run (%d searchable knobs)", recipe.search.sampler, done,
             remaining, len(params))
    if remaining:
        with progress(total=remaining, desc=f"search ({recipe.search.sampler})") as bar:
            def tick(study, trial):
                bar.update(1)
                if trial.state == TrialState.FAIL:
                    reason = trial.system_attrs.get("fail_reason", "unknown error").strip().splitlines()[-1]
                    log.warning("trial %d failed and counts as a rejected move: %s", trial.number, reason)
                best = _best_quality(study)
                if best is not None:
                    bar.set_postfix_str(f"best Q {best:.4f}")
            try:
                study.optimize(objective, n_trials=remaining, timeout=recipe.search.timeout_s, callbacks=[tick],
                               catch=(RuntimeError, ValueError))
            except KeyboardInterrupt:
                # Ctrl-C can land outside the objective (in the sampler, or while a result is
                # stored), where Optuna leaves the trial RUNNING: fail it so the study stays clean.
                _fail_interrupted_trials(study)
                raise
    return study


def _best_quality(study) -> Optional[float]:
    values = [t.user_attrs.get("quality") for t in study.get_trials(deepcopy=False) if "quality" in t.user_attrs]
    return max(values) if values else None


def pareto_candidates(job: Job, study) -> list[dict[str, Any]]:
    """``finetune.top_k`` Pareto-best trials, best quality score first, one per latency."""
    front = [t for t in study.best_trials if "quality" in t.user_attrs]
    front.sort(key=lambda t: t.user_attrs["quality"], reverse=True)
    picked, latencies = [], set()
    for t in front:
        if len(picked) == job.recipe.finetune.top_k:
            break
        if t.values[1] in latencies:
            continue  # same point of the front: fine-tuning it again adds nothing to the report
        latencies.add(t.values[1])
        picked.append({"label": f"{job.recipe.search.sampler}-t{t.number}", "kind": "search", "trial": t.number,
                       "knob_bits": {knob_name(p): v for p, v in t.params.items()},
                       "search_accuracy": t.values[0], "search_quality": t.user_attrs["quality"]})
    return picked


def uniform_candidates(job: Job) -> list[dict[str, Any]]:
    out = []
    for b in job.recipe.finetune.baselines:
        bits = {k: b for k in job.qmodel.search_space()}
        out.append({"label": f"uniform-{b}", "kind": "baseline", "knob_bits": bits})
    return out


# --- fine-tuning, export ------------------------------------------------------------------------------
def _finetune_key(job: Job, knob_bits: dict[str, int]) -> str:
    payload = json.dumps({"bits": knob_bits, "finetune": job.recipe.finetune.model_dump(),
                          "export": job.recipe.export.model_dump()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def finetune_and_export(job: Job, candidate: dict[str, Any], progress) -> dict[str, Any]:
    """Fine-tune one allocation from the shared weights, test it, export and verify QONNX."""
    recipe, q = job.recipe, job.qmodel
    models_dir = job.out / "models"
    models_dir.mkdir(exist_ok=True)
    label, knob_bits = candidate["label"], candidate["knob_bits"]
    record_path = models_dir / f"{label}.json"
    key = _finetune_key(job, knob_bits)
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("key") == key:
            return record
    q.load_state_dict(job.base_state)
    q.set_knob_bits(knob_bits)
    ft = recipe.finetune
    _reseed(job, recipe.seed)
    steps = ft.epochs * len(job.loaders["train"])
    with progress(total=steps, desc=f"fine-tune {label}") as bar:
        train(q, job.loaders["train"], epochs=ft.epochs, lr=ft.lr, progress=bar,
              teacher=job.float_model if ft.distill else None, temperature=ft.distill_temperature)
    q.eval()
    torch.save(q.state_dict(), models_dir / f"{label}.pt")
    record = {**candidate, "key": key,
              "bits": {layer: list(pair) for layer, pair in q.get_bits().items()},
              "val_accuracy": evaluate(q, job.loaders["val"]),
              "test_accuracy": evaluate(q, job.loaders["test"]),
              "latency_cycles": job.latency(knob_bits),
              "latency_seconds": job.latency(knob_bits) / job.backend.profile.clock_hz,
              "latency_ratio": job.latency(knob_bits) / job.reference_latency,
              "per_layer_cycles": job.per_layer_latency(knob_bits),
              "size_bits": job.size_bits(knob_bits),
              "checkpoint": str(models_dir / f"{label}.pt")}
    record["qonnx"] = _export(job, label) if recipe.export.qonnx else None
    record_path.write_text(json.dumps(record, indent=1))
    return record


def _export(job: Job, label: str) -> dict[str, Any]:
    from brevitas_amed.export import export_qonnx, verify_qonnx

    x_all = next(iter(job.loaders["test"]))[0]
    path = export_qonnx(job.qmodel, x_all[:1], job.out / "models" / f"{label}.onnx")
    result: dict[str, Any] = {"path": str(path), "verified": None}
    if job.recipe.export.verify:
        check = verify_qonnx(job.qmodel, path, x_all[: job.recipe.export.verify_samples], job.recipe.export.tolerance)
        result.update(verified=check.passed, max_abs_diff=check.max_abs_diff, output_step=check.output_step,
                      same_predictions=check.same_predictions)
        if not check.passed:
            log.warning("%s: QONNX output differs from PyTorch by %.3g", label, check.max_abs_diff)
    return result


# --- the whole job ------------------------------------------------------------------------------------
def run(recipe: Recipe, progress=None) -> dict[str, Any]:
    """Run (or resume) the whole job; returns the summary also written to ``summary.json``."""
    from brevitas_amed.report import write_report

    progress = progress or _tqdm_factory()
    started = time.time()
    job = build_job(recipe, progress)
    study = run_search(job, progress)
    candidates = pareto_candidates(job, study) + uniform_candidates(job)
    finals = [finetune_and_export(job, c, progress) for c in candidates]
    summary = build_summary(job, study, finals, time.time() - started)
    (job.out / "summary.json").write_text(json.dumps(summary, indent=1))
    (job.out / "trials.json").write_text(json.dumps(trial_table(study), indent=1))
    write_report(job.out)
    return summary


def trial_table(study) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "params": t.params,
                     "values": list(t.values) if t.values else None, **t.user_attrs})
    return rows


def build_summary(job: Job, study, finals: list[dict[str, Any]], elapsed_s: float) -> dict[str, Any]:
    from optuna.trial import TrialState

    searched = [f for f in finals if f["kind"] == "search"]
    # Chosen on validation accuracy (the test split only reports).
    best = max(searched, key=lambda f: job.quality.score(f["val_accuracy"], f["latency_cycles"]), default=None)
    return {
        "recipe": job.recipe.name,
        "model": job.recipe.model.name,
        "backend": job.recipe.hardware.backend,
        "profile": job.backend.profile.name,
        "sampler": job.recipe.search.sampler,
        "trials": len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))),
        "float_accuracy": job.float_accuracy,
        "uniform8_latency_cycles": job.reference_latency,
        "uniform8_latency_seconds": job.reference_latency / job.backend.profile.clock_hz,
        "float_size_bits": 32 * sum(l.weight_count for l in job.workload),
        "best": best["label"] if best else None,
        "finals": finals,
        "elapsed_s": round(elapsed_s, 1),
    }


def _tqdm_factory():
    from tqdm.auto import tqdm

    def progress(total: int, desc: str):
        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)

    return progress
