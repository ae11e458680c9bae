"""Which model families pass FINN's flow: a tiny job per family at a small input size, then
``brevitas-amed finn`` on its exported models (FINN's environment must exist:
``brevitas-amed finn --setup``).

    python benchmarks/finn_zoo.py [--out /tmp/finn_zoo] [--models resnet18,mobilenet_v2,...]

(families: ``resnet18``, ``mobilenet_v2``, ``mobilenet_v3_small``, ``efficientnet_b0``,
``regnet_x_400mf``, ``shufflenet_v2_x0_5``; the default runs the first three: each of the others
takes FINN tens of minutes on two cores.)

The jobs use the digits data upsampled to ``--image-size`` with three channels and tiny search
settings: the point is the exported graphs (residual blocks, depthwise and grouped convolutions,
squeeze-and-excitation, hard-swish, SiLU, channel shuffle), not their accuracy. Prints one line
per family and writes ``OUT/finn_zoo.json``. ``--set KEY=VALUE`` adds recipe settings to the
jobs: with the default ``scalesim`` profile the analytic latency of these tiny jobs does not move with the bits, every
trial ties and the all-8-bit start wins, so for a searched mixed allocation use e.g.
``--set hardware.profile=lowmem --set search.trials=8`` (MobileNetV3-small: 6-bit weights on 4
layers, 6-bit activations on 3).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["hardware.backend=analytic", "search.trials=2", "search.warmup_epochs=1", "search.adapt_steps=2",
        "model.pretrain.epochs=1", "finetune.epochs=1", "finetune.top_k=1", "finetune.baselines=[8]",
        "export.verify_samples=1", "data.channels=3", "threads=1",
        "search.bit_choices=all", "finetune.distill=false"]  # the settings README's figures were measured in


def run_family(name: str, out: Path, image_size: int, target_fps: int, extra: list[str] = (),
               timeout: float = 3600) -> dict:
    job = out / name
    start = time.time()
    if not (job / "summary.json").is_file():
        sets = TINY + [f"model.name={name}", f"data.image_size={image_size}", f"output_dir={job}", *extra]
        cmd = [sys.executable, "-m", "brevitas_amed", "recipe", "-q"] + [a for s in sets for a in ("--set", s)]
        job_run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if job_run.returncode != 0:
            return {"family": name, "ok": False, "stage": "job", "error": job_run.stderr.strip()[-500:]}
    job_s = time.time() - start
    finn = subprocess.run([sys.executable, "-m", "brevitas_amed", "finn", str(job), "--target-fps", str(target_fps),
                           "--timeout", str(timeout)],
                          capture_output=True, text=True, cwd=REPO)
    report = json.loads((job / "finn.json").read_text()) if (job / "finn.json").is_file() else {"models": []}
    return {"family": name, "ok": finn.returncode == 0, "stage": "finn", "job_seconds": round(job_s),
            "finn_seconds": round(time.time() - start - job_s), "error": finn.stderr.strip()[-500:] or None,
            "models": [{k: m.get(k) for k in ("label", "ok", "failed_step", "error", "weight_bits_match",
                                              "finn_throughput_fps", "LUT", "BRAM_18K", "DSP",
                                              "streamlined_max_abs_diff")} for m in report["models"]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/finn_zoo"))
    p.add_argument("--models", default="resnet18,mobilenet_v2,mobilenet_v3_small")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--target-fps", type=int, default=1000)
    p.add_argument("--finn-timeout", type=float, default=3600,
                   help="seconds FINN may take per model (RegNetX-400MF: about 30 min on 2 busy cores)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra recipe setting for the jobs (repeatable), e.g. search.trials=8 for a mixed allocation")
    args = p.parse_args()
    results = []
    for name in args.models.split(","):
        results.append(run_family(name, args.out, args.image_size, args.target_fps, args.set, args.finn_timeout))
        r = results[-1]
        print(f"{name}: {'pass' if r['ok'] else 'FAIL'} ({r['stage']}) "
              + "; ".join(f"{m['label']}: {'ok' if m['ok'] else m['failed_step']}" for m in r.get("models", [])),
              flush=True)
    (args.out / "finn_zoo.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
