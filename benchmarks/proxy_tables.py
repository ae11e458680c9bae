"""The tables of ``benchmarks/proxy_fidelity.py``, from its rows (``--json``): Kendall's tau
between each proxy and the fine-tuned accuracy, the reference's own noise (the ceiling, and one
fine-tuning ranked like the mean of the others), each draw's tau, and the same-images table."""

from __future__ import annotations

import math
import statistics

from scipy.stats import kendalltau

from brevitas_amed.job.context import Job
from brevitas_amed.job.search import evaluation_noise


def tau(x: list[float], y: list[float]) -> float:
    return float(kendalltau(x, y).statistic) if len(x) > 2 else float("nan")


def pooled_accuracy(fts: list[list[float]], n_val: int, n_test: int) -> tuple[float, float]:
    """(test, val + test) accuracy of the mean of fine-tunings ``fts`` ([val, test, seconds] each)."""
    test = statistics.fmean(f[1] for f in fts)
    val = statistics.fmean(f[0] for f in fts)
    return test, (val * n_val + test * n_test) / (n_val + n_test)


def ceiling_name(half: int) -> str:
    """The ceiling row's name: the mean of the first ``half`` fine-tunings against the next ``half``."""
    if half == 1:
        return "ceiling: fine-tune 1 vs 2"
    return f"ceiling: fine-tunes 1-{half} vs {half + 1}-{2 * half}"


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
        ceiling = (f"| *{ceiling_name(half)}* "
                   f"| {split_test:.3f} | {split_half:.3f} | | "
                   f"{tau([a[i][0] for i in near], [b[i][0] for i in near]):.3f} | | {ft_s:.2f} |")
    print(f"| proxy | tau vs fine-tuned test (mean of {k}) | tau vs val+test (mean of {k}) "
          f"| tau vs val+test (mean of {max(1, half)}) | tau within 2 pt of float (test) "
          f"| tau vs noiseless test / val+test (est.) | s per trial |")
    print("|---|---|---|---|---|---|---|")
    if k >= 2:
        print(ceiling)
        med, lo, hi = one_finetune(rows, k, 0, 1)
        print(f"| *one fine-tuning as the proxy: its validation vs the mean of the other {k - 1} (median of {k})* "
              f"| {med:.3f} ({lo:.2f}-{hi:.2f}) | | | | | {ft_s:.2f} |")
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


def one_finetune(rows: list[dict], k: int, read: int, against: int) -> tuple[float, float, float]:
    """Tau of one fine-tuning's accuracy (split ``read``: 0 validation, 1 test) against the mean of
    the other ``k - 1`` (split ``against``), for each of the ``k``: (median, lowest, highest). What a
    search would see if every trial were a whole fine-tuning: the best any cheaper proxy can hope for."""
    taus = [tau([r["ft"][i][read] for r in rows],
                [statistics.fmean(f[against] for j, f in enumerate(r["ft"][:k]) if j != i) for r in rows])
            for i in range(k)]
    return statistics.median(taus), min(taus), max(taus)


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
        lines.append(f"| *{ceiling_name(half)}* | "
                     f"{tau(mean_ft(0, 0, half), mean_ft(0, half, 2 * half)):.3f} | "
                     f"{tau(mean_ft(1, 0, half), mean_ft(1, half, 2 * half)):.3f} | | |")
        (v, *_), (t, *_) = one_finetune(rows, k, 0, 0), one_finetune(rows, k, 1, 1)
        lines.append(f"| *one fine-tuning vs the mean of the other {k - 1} (median of {k})* | {v:.3f} | {t:.3f} | | |")
    for name in names:
        draws = [name] + sorted((p for p in rows[0]["proxies"] if p.startswith(name + "#")), key=lambda p: int(p.split("#")[1]))
        draws = [d for d in draws if all(len(r["proxies"].get(d, ())) > 2 for r in rows)]
        if not draws or draws[0] != name:
            continue
        on = [[[r["proxies"][d][split] for r in rows] for d in draws] for split in (0, 2)]
        means = [[statistics.fmean(v) for v in zip(*x)] for x in on]
        lines.append(f"| {name} | {tau(on[0][0], val):.3f} | {tau(on[1][0], test):.3f} | "
                     + (f"{tau(means[0], val):.3f} | {tau(means[1], test):.3f} |" if len(draws) > 1 else "| |"))
    if len(lines) > 2 * (k >= 2):
        print(f"\nThe same images (reference: the mean of {k} fine-tunings, on the split the proxy's number is read on)\n\n"
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
