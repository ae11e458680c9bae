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
mean of the other half: how far the reference itself is from noiseless.

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
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

from scipy.stats import kendalltau

from brevitas_amed.job.context import Job, build_job
from brevitas_amed.job.inputs import reseed
from brevitas_amed.job.progress import no_progress
from brevitas_amed.job.recipe import load_recipe
from brevitas_amed.job.search import estimate_accuracy, evaluation_noise
from brevitas_amed.training.loops import evaluate, reestimate_batchnorm, train

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


def tau(x: list[float], y: list[float]) -> float:
    return float(kendalltau(x, y).statistic) if len(x) > 2 else float("nan")


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


def pooled_accuracy(fts: list[list[float]], n_val: int, n_test: int) -> tuple[float, float]:
    """(test, val + test) accuracy of the mean of fine-tunings ``fts`` ([val, test, seconds] each)."""
    test = statistics.fmean(f[1] for f in fts)
    val = statistics.fmean(f[0] for f in fts)
    return test, (val * n_val + test * n_test) / (n_val + n_test)


def noiseless_tau(observed: float, split_half: float, k: int) -> float:
    """An estimate of a proxy's tau against the fine-tuned accuracy averaged over infinitely many
    fine-tunings, from its tau against the mean of ``k`` and the tau between two halves of them.

    Kendall's tau is turned into a correlation (r = sin(pi tau / 2), exact for normal data), the
    reference's reliability is the Spearman-Brown step-up of the split-half correlation, and the
    proxy's correlation is divided by its square root (attenuation by the reference's noise only;
    the proxy's own noise stays). A rough estimate: the errors are assumed independent."""
    r_half = math.sin(math.pi * split_half / 2)
    if not k >= 2 or r_half <= 0:
        return float("nan")
    halves = k / (k // 2)  # the full mean is this many times a half
    reliability = halves * r_half / (1 + (halves - 1) * r_half)
    r = math.sin(math.pi * observed / 2) / math.sqrt(reliability)
    return 2 / math.pi * math.asin(max(-1.0, min(1.0, r)))


def report(job: Job, rows: list[dict]) -> None:
    n_val, n_test = len(job.data.val), len(job.data.test)
    k = min(len(r["ft"]) for r in rows)
    half = k // 2
    # the reference: the mean over the K fine-tunings; "half": the mean over the first K/2 of them
    test, pooled = map(list, zip(*(pooled_accuracy(r["ft"][:k], n_val, n_test) for r in rows)))
    half_pooled = [pooled_accuracy(r["ft"][:max(1, half)], n_val, n_test)[1] for r in rows]
    near = [i for i, t in enumerate(test) if t >= job.float_accuracy.test - 0.02]
    ft_s = statistics.fmean(f[2] for r in rows for f in r["ft"][:k])
    print(f"\n{len(rows)} allocations, latency {min(r['latency_ratio'] for r in rows):.3f}-"
          f"{max(r['latency_ratio'] for r in rows):.3f} of uniform 8-bit, fine-tuned test accuracy "
          f"{100 * min(test):.2f}-{100 * max(test):.2f}%; {len(near)} within 2 points of float on test; "
          f"fine-tuning {ft_s:.1f} s per model, {k} seed(s) each (the reference: their mean)\n")
    noise = sorted(r["proxies"]["noise"][0] for r in rows if r["proxies"].get("noise"))
    if noise:
        print(f"evaluation noise (std of the recipe's trial repeated with other batches, per allocation): median "
              f"{100 * statistics.median(noise):.2f} pt, range {100 * noise[0]:.2f}-{100 * noise[-1]:.2f} pt; "
              f"binomial s.e. at the threshold {100 * evaluation_noise(job):.2f} pt\n")
    split_test = split_half = float("nan")
    if k >= 2:  # how well half the fine-tunings rank like the other half: the noise of the reference
        a = [pooled_accuracy(r["ft"][:half], n_val, n_test) for r in rows]
        b = [pooled_accuracy(r["ft"][half:2 * half], n_val, n_test) for r in rows]
        split_test, split_half = tau([x[0] for x in a], [x[0] for x in b]), tau([x[1] for x in a], [x[1] for x in b])
        first, second = ("1", "2") if half == 1 else (f"1-{half}", f"{half + 1}-{2 * half}")
        ceiling = (f"| *ceiling: fine-tune{'s' * (half > 1)} {first} vs {second}* "
                   f"| {split_test:.3f} | {split_half:.3f} | | "
                   f"{tau([a[i][0] for i in near], [b[i][0] for i in near]):.3f} | | {ft_s:.2f} |")
    print(f"| proxy | tau vs fine-tuned test (mean of {k}) | tau vs val+test (mean of {k}) "
          f"| tau vs val+test (mean of {max(1, half)}) | tau within 2 pt of float (test) "
          f"| tau vs noiseless test / val+test (est.) | s per trial |")
    print("|---|---|---|---|---|---|---|")
    if k >= 2:
        print(ceiling)
    # the fine-tuned models' own validation accuracy against their test accuracy: how far the two
    # splits agree on the very models a validation proxy stands in for
    val = [statistics.fmean(f[0] for f in r["ft"][:k]) for r in rows]
    print(f"| *fine-tuned validation (mean of {k}) vs test* | {tau(val, test):.3f} | | | "
          f"{tau([val[i] for i in near], [test[i] for i in near]):.3f} | | |")
    names = [p for p in rows[0]["proxies"] if p != "noise" and all(p in r["proxies"] for r in rows)]
    for name in [p for p in names if "#" not in p]:
        x = [r["proxies"][name][0] for r in rows]
        seconds = statistics.fmean(r["proxies"][name][1] for r in rows)
        on_test, on_pooled = tau(x, test), tau(x, pooled)
        print(f"| {name} | {on_test:.3f} | {on_pooled:.3f} | {tau(x, half_pooled):.3f} | "
              f"{tau([x[i] for i in near], [test[i] for i in near]):.3f} | "
              f"{noiseless_tau(on_test, split_test, k):.2f} / {noiseless_tau(on_pooled, split_half, k):.2f} "
              f"| {seconds:.2f} |")

    draw_table(rows, [p for p in names if "#" not in p], test, pooled)
    same_images_table(rows, [p for p in names if "#" not in p], k)


def same_images_table(rows: list[dict], names: list[str], k: int) -> None:
    """Tau when a proxy and the fine-tuned models read the same images: the proxy (validation) against
    the fine-tuned validation accuracy, and the proxy's model read on test against the fine-tuned
    test accuracy. What is left is how the two procedures rank, without how the splits differ."""
    half = k // 2

    def mean_ft(split: int, lo: int, hi: int) -> list[float]:
        return [statistics.fmean(f[split] for f in r["ft"][lo:hi]) for r in rows]

    val, test = mean_ft(0, 0, k), mean_ft(1, 0, k)
    lines = []
    if k >= 2:
        first, second = ("1", "2") if half == 1 else (f"1-{half}", f"{half + 1}-{2 * half}")
        lines.append(f"| *ceiling: fine-tune{'s' * (half > 1)} {first} vs {second}* | "
                     f"{tau(mean_ft(0, 0, half), mean_ft(0, half, 2 * half)):.3f} | "
                     f"{tau(mean_ft(1, 0, half), mean_ft(1, half, 2 * half)):.3f} | | |")
    for name in names:
        draws = [name] + sorted((p for p in rows[0]["proxies"] if p.startswith(name + "#")), key=lambda p: int(p.split("#")[1]))
        draws = [d for d in draws if all(len(r["proxies"].get(d, ())) > 2 for r in rows)]
        if not draws or draws[0] != name:
            continue
        on = [[[r["proxies"][d][split] for r in rows] for d in draws] for split in (0, 2)]
        means = [[statistics.fmean(v) for v in zip(*x)] for x in on]
        lines.append(f"| {name} | {tau(on[0][0], val):.3f} | {tau(on[1][0], test):.3f} | "
                     + (f"{tau(means[0], val):.3f} | {tau(means[1], test):.3f} |" if len(draws) > 1 else "| |"))
    if len(lines) > (k >= 2):
        print(f"\nThe same images (reference: the mean of {k} fine-tunings, on the split the proxy's number is read on)\n"
              "| proxy | one draw on validation vs fine-tuned validation | its model on test vs fine-tuned test "
              "| mean of the draws, validation | mean of the draws, test |\n|---|---|---|---|---|\n" + "\n".join(lines))


def draw_table(rows: list[dict], names: list[str], test: list[float], pooled: list[float]) -> None:
    """Tau of each draw (batch seed) of the proxies measured more than once, and of their mean."""
    lines = []
    for name in names:
        draws = [name] + sorted((p for p in rows[0]["proxies"] if p.startswith(name + "#")
                                 and all(p in r["proxies"] for r in rows)), key=lambda p: int(p.split("#")[1]))
        if len(draws) < 2:
            continue
        x = [[r["proxies"][d][0] for r in rows] for d in draws]
        mean = [statistics.fmean(v) for v in zip(*x)]
        lines.append(f"| {name} | {', '.join(f'{tau(v, test):.2f}' for v in x)} | "
                     f"{', '.join(f'{tau(v, pooled):.2f}' for v in x)} | {tau(mean, test):.3f} "
                     f"| {tau(mean, pooled):.3f} |")
    if lines:
        print("\n| proxy | tau of each draw vs fine-tuned test | each draw vs val+test | mean of the draws vs test "
              "| mean of the draws vs val+test |\n|---|---|---|---|---|\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
