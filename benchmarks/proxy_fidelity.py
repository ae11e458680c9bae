"""Proxy fidelity: does the search-time accuracy rank allocations as the recipe's fine-tuning does?

For ``--allocations`` bit allocations spanning the latency range (uniform widths, then random
allocations drawn from narrow and wide sets of widths, so accuracies spread out), it measures
the accuracy the search sees under several proxies and the accuracy after the recipe's
fine-tuning (``finetune.epochs`` from the shared weights), and prints Kendall's tau
(``scipy.stats.kendalltau``) between each proxy and the fine-tuned accuracy, with each proxy's
time per trial. Proxies:

- ``recipe``: the recipe's trial: ``search.adapt_steps`` QAT steps, validation accuracy.
- ``steps=N``: N adaptation steps instead (``--steps``).
- ``repeats=K``: the mean of K recipe trials with different batches (what re-evaluation gives);
  their standard deviation is the measured evaluation noise, printed beside the binomial one.
- ``bn``: no training; batch-norm statistics re-estimated on ``--bn-batches`` training batches.

The fine-tuned accuracy (the reference) is the mean of ``--finetunes`` K fine-tunings with other
batch seeds, measured on the test split and on validation + test together (more images, less
noise); tau is also given against the mean of the first K/2 fine-tunings (a noisier reference),
on the allocations whose fine-tuned accuracy is within 2 points of float (the ones the search
must tell apart), and as an estimate against a noiseless reference (K -> infinity; see
:func:`noiseless_tau`). The ceiling row ranks the mean of half the fine-tunings against the
mean of the other half: how far the reference itself is from noiseless; the "one fine-tuning"
row ranks each fine-tuning against the mean of the others: what the search would reach if every
trial were a whole fine-tuning. The "same images" table ranks each proxy against the fine-tuned
accuracy on the split it reads (its model is read on test as well): the procedures without the
difference between the splits. The tables are :mod:`proxy_tables`.

    python benchmarks/proxy_fidelity.py                                   # digits, 32 allocations
    python benchmarks/proxy_fidelity.py --steps 30,60 --repeats 4 --finetunes 4 \\
        --set finetune.distill=false                                      # README's first table
    python benchmarks/proxy_fidelity.py --set model.name=resnet18 --set data.channels=3 \\
        --set data.image_size=16 --set finetune.epochs=2 --set finetune.distill=false \\
        --set hardware.backend=analytic --allocations 30 --finetunes 2 --proxies recipe,bn  # README's ResNet-18
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import tempfile
import time
from pathlib import Path

from brevitas_amed.job.context import Job, build_job
from brevitas_amed.job.inputs import reseed
from brevitas_amed.job.progress import no_progress
from brevitas_amed.job.recipe import load_recipe
from brevitas_amed.job.search import estimate_accuracy
from brevitas_amed.training.loops import evaluate, reestimate_batchnorm, train
from proxy_tables import report

# Sets of widths random allocations draw from: narrow sets give low or high accuracy, wide ones mix.
WIDTH_SETS = ([2, 3], [2, 3, 4], [3, 4], [2, 4, 8], [3, 4, 6], [4, 6, 8], None, None)


def allocations(job: Job, n: int, seed: int) -> list[tuple[str, dict[str, int]]]:
    """Uniform allocations at every width, then random ones cycling through :data:`WIDTH_SETS`."""
    space = job.qmodel.search_space()
    widths = sorted({b for c in space.values() for b in c})
    picked = [(f"uniform-{b}", {k: b if b in c else min(c, key=lambda x: abs(x - b)) for k, c in space.items()})
              for b in widths]
    rng = random.Random(seed)
    i = 0
    while len(picked) < n:
        allowed = WIDTH_SETS[i % len(WIDTH_SETS)]
        bits = {k: rng.choice([b for b in c if allowed is None or b in allowed] or list(c)) for k, c in space.items()}
        picked.append((f"random-{i}-{'all' if allowed is None else ''.join(map(str, allowed))}", bits))
        i += 1
    return picked[:n]


def measured_with(recipe, bn_batches: int) -> dict:
    """What a row's measurements depend on: the job (seed, model, data, quantization, hardware,
    quality, the search settings that shape a trial; not ``bit_choices``: the allocations here are
    drawn from every width), the fine-tuning's training settings and ``--bn-batches``."""
    job = recipe.search_affecting()
    job["search"] = {k: v for k, v in job["search"].items() if k != "bit_choices"}
    return json.loads(json.dumps({"job": job, "finetune": recipe.finetune.model_dump(
        include={"epochs", "lr", "distill", "distill_temperature"}), "bn_batches": bn_batches}, default=str))


def flat(settings: dict, prefix: str = "") -> dict:
    """``{"job.search.adapt_steps": 10, ...}``: nested settings by dotted name."""
    out = {}
    for key, value in settings.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def reusable(path: str, now: dict) -> dict[str, dict]:
    """The rows of an earlier ``--json`` by label, if they were measured with the settings ``now``
    (:func:`measured_with`; a setting the row does not record counts as another).

    Raises:
        SystemExit: A row was measured with other settings (named), or by a version that did not
            record them: its fine-tunings would be mixed with these.
    """
    rows = json.loads(Path(path).read_text())
    for row in rows:
        then = row.get("settings")
        if then is None:
            raise SystemExit(f"--reuse {path}: row {row.get('label')!r} does not record the settings it was measured "
                             f"with (an older version wrote it); rerun without --reuse")
        was, is_ = flat(then), flat(now)
        changed = sorted(k for k in is_ if k not in was or was[k] != is_[k])
        if changed:
            raise SystemExit(f"--reuse {path}: row {row.get('label')!r} was measured with other {', '.join(changed)}; "
                             f"give the same --set options as that run, or rerun without --reuse")
    return {row["label"]: row for row in rows}


def bn_reestimated(job: Job, bits: dict[str, int], batches: int, seed: int) -> float:
    """Validation accuracy at ``bits`` from the shared weights, batch-norm statistics re-estimated
    (what ``search.proxy: batchnorm`` measures)."""
    q = job.qmodel
    q.load_state_dict(job.base_state)
    q.set_knob_bits(bits)
    reseed(job.loaders, seed)
    reestimate_batchnorm(q, job.loaders["train"], batches)
    return evaluate(q, job.loaders["val"], job.recipe.search.eval_batches)


def finetuned(job: Job, bits: dict[str, int], seed: int) -> list[float]:
    """The recipe's fine-tuning at ``bits`` with batches seeded by ``seed``: [val, test, seconds]."""
    q, ft = job.qmodel, job.recipe.finetune
    started = time.perf_counter()
    q.load_state_dict(job.base_state)
    q.set_knob_bits(bits)
    reseed(job.loaders, seed)
    train(q, job.loaders["train"], epochs=ft.epochs, lr=ft.lr, teacher=job.float_model if ft.distill else None,
          temperature=ft.distill_temperature)
    seconds = time.perf_counter() - started
    return [evaluate(q, job.loaders["val"]), evaluate(q, job.loaders["test"]), seconds]


def proxies(job: Job, bits: dict[str, int], seed: int, args, known: dict) -> dict[str, list[float]]:
    """``{proxy: [accuracy, seconds, test accuracy]}`` for one allocation (a proxy's own model read on
    the test split: the "same images" table); proxies in ``known`` are kept."""
    out: dict[str, list[float]] = dict(known)

    def timed(name: str, fn, on_test: bool = False) -> None:
        if name in out:
            return
        started = time.perf_counter()
        value = fn()
        out[name] = [value, time.perf_counter() - started]
        if on_test:  # the model the proxy left, read on the test split too (not part of a trial's cost)
            out[name].append(evaluate(job.qmodel, job.loaders["test"]))

    s = job.recipe.search
    single = {}  # proxies of one draw: batch seed -> accuracy
    if "recipe" in args.proxies:
        single["recipe"] = lambda sd: estimate_accuracy(job, bits, sd)
    for steps in args.steps if "steps" in args.proxies else []:
        more = job.recipe.model_copy(update={"search": s.model_copy(update={"adapt_steps": steps})})
        sjob = Job(**{**vars(job), "recipe": more})
        single[f"steps={steps}"] = lambda sd, sjob=sjob: estimate_accuracy(sjob, bits, sd)
    if "bn" in args.proxies:
        single["bn"] = lambda sd: bn_reestimated(job, bits, args.bn_batches, sd)
    for name, fn in single.items():  # draw r > 1 is stored as "<name>#r"
        for r in range(args.draws):  # a trial of several draws leaves only its last draw's model to read on test
            timed(name if r == 0 else f"{name}#{r + 1}", lambda: fn(seed + 7919 * r), name == "bn" or s.draws == 1)
    draws: list[float] = []

    def repeated() -> float:
        draws.extend(estimate_accuracy(job, bits, seed + 7919 * r) for r in range(args.repeats))
        return statistics.fmean(draws)

    if "repeats" in args.proxies:
        timed(f"repeats={args.repeats}", repeated)
        if draws:
            out["noise"] = [statistics.stdev(draws) if len(draws) > 1 else float("nan"), 0.0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--allocations", type=int, default=32)
    parser.add_argument("--steps", type=lambda t: [int(v) for v in t.split(",") if v], default=[30])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bn-batches", type=int, default=8)
    parser.add_argument("--draws", type=int, default=1,
                        help="measure the recipe, steps and bn proxies with this many batch seeds each and print the "
                             "tau of every draw: how much a tau moves with the batches alone")
    parser.add_argument("--output-dir", default=None, help="job folder (default: a temporary one)")
    parser.add_argument("--proxies", type=lambda t: set(t.split(",")), default={"recipe", "steps", "repeats", "bn"})
    parser.add_argument("--finetunes", "--finetune-seeds", dest="finetunes", type=int, default=2,
                        help="fine-tune each allocation K times (batch seeds seed, seed+1, ...); the reference is "
                             "their mean, the ceiling row compares the mean of the first half with the other half")
    parser.add_argument("--json", default=None, help="write every measurement here")
    parser.add_argument("--reuse", default=None, help="a --json of an earlier run: what it measured is kept")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.output_dir or str(Path(tmp) / "job")
        recipe = load_recipe(args.recipe, [f"output_dir={out_dir}", *args.overrides])
        settings = measured_with(recipe, args.bn_batches)
        known = reusable(args.reuse, settings) if args.reuse else {}
        started = time.perf_counter()
        job = build_job(recipe, no_progress())
        print(f"{recipe.name} ({recipe.model.name}): job prepared in {time.perf_counter() - started:.0f} s; float "
              f"val {100 * job.float_accuracy.val:.2f}%, test {100 * job.float_accuracy.test:.2f}%", flush=True)
        rows = []
        for i, (label, bits) in enumerate(allocations(job, args.allocations, recipe.seed)):
            before = known.get(label, {})
            ft = before.get("ft", [])
            row = {"label": label, "settings": settings,
                   "latency_ratio": job.latency.cycles(bits) / job.reference_latency,
                   "proxies": proxies(job, bits, recipe.seed + 100_000 + i, args, before.get("proxies", {})),
                   "ft": ft[:args.finetunes] + [finetuned(job, bits, recipe.seed + k)
                                                for k in range(len(ft), args.finetunes)]}
            rows.append(row)
            print(f"{label:<22} latency {row['latency_ratio']:.3f}  "
                  + "  ".join(f"{k} {100 * v[0]:.2f}" for k, v in row["proxies"].items() if k != "noise")
                  + "  fine-tuned " + ", ".join(f"val {100 * v:.2f} test {100 * t:.2f}" for v, t, _ in row["ft"]),
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    report(job, rows)


if __name__ == "__main__":
    main()
