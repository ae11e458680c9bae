"""Scale: what the job costs where its users run it.

* ResNet-18 at 224x224 on a generated ImageFolder tree (smooth random JPEGs of ImageNet's typical
  size), with the settings of ``recipes/resnet18.yaml``: seconds per shared-weight QAT step, per
  fine-tuning step (distilled, as the recipe), per validation batch and per search trial, on the
  CPU and on every CUDA device present; and images per second one loader worker decodes.
* The digits job with 1 and 2 local workers (``recipe --workers k`` on copies of one prepared
  output directory, so both search the same budget from the same shared weights): the wall time
  until the study's last trial completes (trials per hour) and until the job ends (the workers
  share the fine-tuning).
* The projected wall time of ``recipes/resnet18.yaml`` on ImageNet on 1 and 8 GPUs, from those
  per-step times (measured on a GPU when there is one; otherwise the ``--gpu-*`` assumptions,
  printed as such).

    python benchmarks/scale.py [--skip-resnet] [--skip-workers] [--digits-trials 120] [--json out.json]
    python benchmarks/scale.py --skip-workers --devices cuda:0 --pipeline   # a GPU's rows and whole job
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from PIL import Image

from brevitas_amed.job.context import build_job
from brevitas_amed.job.progress import no_progress
from brevitas_amed.job.recipe import Recipe, load_recipe
from brevitas_amed.job.run import run
from brevitas_amed.job.search import run_search
from brevitas_amed.training.device import cuda_count, to_device
from brevitas_amed.training.loops import evaluate, random_bits_sampler, train

REPO = Path(__file__).resolve().parents[1]
IMAGENET_TRAIN, IMAGENET_VAL = 1_281_167, 50_000


def make_tree(root: Path, classes: int = 10, train: int = 26, val: int = 13, seed: int = 0) -> Path:
    """``root/train/<class>/*.jpg`` and ``root/val/...``: smooth random 500x375 JPEGs."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class{c:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                small = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
                Image.fromarray(small).resize((500, 375), Image.BICUBIC).save(folder / f"{i}.jpg", quality=90)
    return root


def per_step(fn, batch, repeats: int) -> float:
    """Seconds per batch of ``fn(batches)`` on one batch held on the device (compute only: the
    loader's share is measured apart), after one call that is not counted."""
    fn([batch])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn([batch] * repeats)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def resnet_figures(tree: Path, device: str, work: Path, repeats: int, size: int = 224) -> dict:
    """Per-step and per-trial seconds of recipes/resnet18.yaml's settings on ``device``."""
    recipe = load_recipe(REPO / "recipes" / "resnet18.yaml", [
        f"data.path={tree}", "model.weights=none", "model.pretrain.epochs=0", "search.warmup_epochs=0",
        "hardware.backend=analytic", f"output_dir={work / device.replace(':', '')}", f"device={device}",
        f"data.image_size={size}",
        f"data.num_workers={min(os.cpu_count() or 1, 4)}", "quantization.calibration_batches=1", "search.trials=2"])
    job = build_job(recipe, no_progress())
    q = job.qmodel
    batch = to_device(next(iter(job.loaders["train"].loader)), job.device)
    bits = random_bits_sampler(q, random.Random(0))
    lr = recipe.search.adapt_lr
    qat = per_step(lambda d: train(q, d, steps=len(d), lr=lr, bit_sampler=bits), batch, repeats)
    ft = per_step(lambda d: train(q, d, steps=len(d), lr=lr, teacher=job.float_model, temperature=2.0), batch,
                  repeats)
    evaluation = per_step(lambda d: evaluate(q, d), batch, repeats)
    dataset = job.loaders["train"].dataset
    started = time.perf_counter()
    for i in range(min(len(dataset), 64)):
        dataset[i]
    decode = min(len(dataset), 64) / (time.perf_counter() - started)
    s = recipe.search
    small = dataclasses.replace(job, recipe=recipe.model_copy(update={"search": s.model_copy(
        update={"adapt_steps": 2, "eval_batches": 1})}))
    started = time.perf_counter()
    run_search(small, no_progress())
    measured_trial = (time.perf_counter() - started) / s.trials
    trial = measured_trial + (s.adapt_steps - 2) * qat + ((s.eval_batches or 1) - 1) * evaluation
    return {"device": device, "name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
            "threads": torch.get_num_threads(), "batch_size": recipe.data.batch_size,
            "qat_step_s": qat, "finetune_step_s": ft, "eval_batch_s": evaluation,
            "trial_s": trial, "trial_small_s": measured_trial, "decode_img_s_per_worker": decode}


def whole_pipeline(tree: Path, device: str, work: Path, size: int = 224) -> dict:
    """The whole job (search, fine-tuning, QONNX export and check) of ResNet-18 at 224 on the tree."""
    recipe = load_recipe(REPO / "recipes" / "resnet18.yaml", [
        f"data.path={tree}", "model.weights=none", "model.pretrain.epochs=1", "hardware.backend=analytic",
        f"output_dir={work / ('pipeline-' + device.replace(':', ''))}", f"device={device}", "search.trials=4",
        "search.adapt_steps=4", "search.eval_batches=1", "finetune.epochs=1", "finetune.top_k=1",
        "finetune.baselines=[8]", "export.verify_samples=2", f"data.num_workers={min(os.cpu_count() or 1, 4)}",
        f"data.image_size={size}"])
    started = time.perf_counter()
    summary = run(recipe, progress=no_progress())
    return {"device": device, "wall_s": time.perf_counter() - started, "trials": summary.trials,
            "models": {f.label: {"test_accuracy": f.test_accuracy, "qonnx_verified": f.qonnx.verified}
                       for f in summary.finals}}


def digits_workers(trials: int, work: Path) -> dict:
    """Wall time of the digits job (``trials`` trials) with 1 and 2 local workers, from the same
    prepared float model and shared weights: until the study's last trial completes (the search)
    and until the process exits (search, shared fine-tuning, export and report)."""
    base = ["hardware.cache=sqlite:///" + str(work / "cache.db"), f"search.trials={trials}"]
    prepared = work / "prepared"
    build_job(load_recipe(None, base + [f"output_dir={prepared}"]), no_progress())
    search, whole = {}, {}
    for workers in (1, 2):
        out = work / f"w{workers}"
        shutil.copytree(prepared, out)
        args = [sys.executable, "-m", "brevitas_amed", "recipe", "-q", "--workers", str(workers)]
        for item in base + [f"output_dir={out}"]:
            args += ["--set", item]
        started = time.time()
        subprocess.run(args, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        whole[workers] = time.time() - started
        study = optuna.load_study(study_name="digits", storage=f"sqlite:///{out / 'study.db'}")
        last = max(t.datetime_complete for t in study.get_trials(deepcopy=False) if t.datetime_complete)
        search[workers] = last.timestamp() - started
    return {"trials": trials, "wall_1_s": search[1], "wall_2_s": search[2], "ratio": search[2] / search[1],
            "trials_per_hour_1": 3600 * trials / search[1], "trials_per_hour_2": 3600 * trials / search[2],
            "job_1_s": whole[1], "job_2_s": whole[2], "job_ratio": whole[2] / whole[1]}


def projection(recipe: Recipe, step: dict, gpus: int) -> dict:
    """Hours of ``recipe`` on ImageNet: warm-up on one GPU, trials and the fine-tuned models shared
    by ``gpus`` workers (a model is fine-tuned on one GPU). A step is never faster than
    ``num_workers`` loader workers decode its batch."""
    bs, s, ft = recipe.data.batch_size, recipe.search, recipe.finetune
    floor = bs / (step["decode_img_s_per_worker"] * recipe.data.num_workers)
    train_s = max(step["qat_step_s"], floor)
    ft_s = max(step["finetune_step_s"] if ft.distill else step["qat_step_s"], floor)
    eval_s = step["eval_batch_s"]
    steps_per_epoch = IMAGENET_TRAIN // bs
    eval_all = -(-IMAGENET_VAL // bs)  # val and test halves together
    parts = {
        "float eval + calibration": (eval_all + recipe.quantization.calibration_batches) * eval_s,
        "shared-weight QAT": s.warmup_epochs * steps_per_epoch * train_s,
        "search": -(-s.trials // gpus) * (s.adapt_steps * train_s + (s.eval_batches or eval_all // 2) * eval_s),
        "fine-tuning": -(-(ft.top_k + len(ft.baselines)) // gpus) * (ft.epochs * steps_per_epoch * ft_s
                                                                     + eval_all * eval_s),
    }
    return {"gpus": gpus, "hours": {k: v / 3600 for k, v in parts.items()}, "total_h": sum(parts.values()) / 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--digits-trials", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per figure on the CPU (x10 on a GPU)")
    parser.add_argument("--gpu-qat-step-s", type=float, default=0.10, help="assumed when no GPU is present")
    parser.add_argument("--gpu-finetune-step-s", type=float, default=0.12, help="assumed when no GPU is present")
    parser.add_argument("--gpu-eval-batch-s", type=float, default=0.03, help="assumed when no GPU is present")
    parser.add_argument("--decode-img-s", type=float, default=None,
                        help="images/s one loader worker decodes, for the projection (default: measured, else 150)")
    parser.add_argument("--pipeline", action="store_true", help="also run the whole ResNet-18 job once per device")
    parser.add_argument("--devices", default=None,
                        help="comma-separated devices for the ResNet-18 figures (default: cpu and every CUDA device)")
    parser.add_argument("--image-size", type=int, default=224, help="ResNet-18's input size (the figures are for 224)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result: dict = {"resnet18": [], "cpu_cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_resnet:
            tree = make_tree(work / "tree")
            devices = args.devices.split(",") if args.devices else ["cpu"] + [f"cuda:{i}" for i in range(cuda_count())]
            for device in devices:
                repeats = args.repeats * (10 if device != "cpu" else 1)
                result["resnet18"].append(resnet_figures(tree, device, work, repeats, args.image_size))
                print(resnet_row(result["resnet18"][-1]), flush=True)
                if args.pipeline:
                    result.setdefault("pipeline", []).append(whole_pipeline(tree, device, work, args.image_size))
        if not args.skip_workers:
            result["digits_workers"] = digits_workers(args.digits_trials, work / "digits")
    gpu = next((r for r in result["resnet18"] if r["device"] != "cpu"), None)
    cpu = next((r for r in result["resnet18"] if r["device"] == "cpu"), None)
    if gpu is None:
        gpu = {"device": "assumed GPU", "qat_step_s": args.gpu_qat_step_s, "finetune_step_s": args.gpu_finetune_step_s,
               "eval_batch_s": args.gpu_eval_batch_s,
               "decode_img_s_per_worker": cpu["decode_img_s_per_worker"] if cpu else 150.0}
    if args.decode_img_s:
        gpu = {**gpu, "decode_img_s_per_worker": args.decode_img_s}
    recipe = load_recipe(REPO / "recipes" / "resnet18.yaml")
    result["projection"] = {"step_source": gpu["device"], **{f"{g}_gpu": projection(recipe, gpu, g) for g in (1, 8)}}
    print_tables(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


def resnet_row(r: dict) -> str:
    return (f"| {r['name']} ({r['threads']} threads) | {r['qat_step_s']:.3f} | {r['finetune_step_s']:.3f} | "
            f"{r['eval_batch_s']:.3f} | {r['trial_s']:.1f} | {r['decode_img_s_per_worker']:.0f} |")


def print_tables(result: dict) -> None:
    if result["resnet18"]:
        print("| device | QAT step (s) | fine-tune step (s) | val batch (s) | trial (s) | decode img/s/worker |")
        print("|---|---|---|---|---|---|")
        for r in result["resnet18"]:
            print(resnet_row(r))
    for p in result.get("pipeline", []):
        print(f"\nwhole ResNet-18 job on {p['device']}: {p['wall_s']:.0f} s, {p['trials']} trials, models {p['models']}")
    w = result.get("digits_workers")
    if w:
        print(f"\ndigits search, {w['trials']} trials: 1 worker {w['wall_1_s']:.1f} s "
              f"({w['trials_per_hour_1']:.0f} trials/h), 2 workers {w['wall_2_s']:.1f} s "
              f"({w['trials_per_hour_2']:.0f} trials/h): ratio {w['ratio']:.2f} (target <= 0.6)")
        print(f"digits job (search, fine-tuning shared by the workers, export, report): 1 worker "
              f"{w['job_1_s']:.1f} s, 2 workers {w['job_2_s']:.1f} s: ratio {w['job_ratio']:.2f}")
    p = result["projection"]
    print(f"\nrecipes/resnet18.yaml on ImageNet, per-step times from {p['step_source']}:")
    for key in ("1_gpu", "8_gpu"):
        parts = ", ".join(f"{k} {v:.1f} h" for k, v in p[key]["hours"].items())
        print(f"  {p[key]['gpus']} GPU(s): {p[key]['total_h']:.1f} h ({parts})")


if __name__ == "__main__":
    main()
