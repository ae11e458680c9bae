"""Does a change keep the digits job's search? Run a short digits job with this tree and with an
earlier commit, same recipe and seed, and compare every trial (state, parameters, values).

    python benchmarks/same_trials.py --base d00047d            # earlier commit vs the working tree
    python benchmarks/same_trials.py --base d00047d --trials 30
    python benchmarks/same_trials.py --base 5e85d6c --set search.bit_choices=all   # across a default change

The earlier commit is unpacked with ``git archive`` into a temporary folder and run from there
(its modules shadow the installed ones); nothing in this checkout changes. Both runs use one torch
thread and the analytic backend, so they differ only by the code. Prints a line per trial that
differs and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def settings(trials: int) -> list[str]:
    return ["hardware.backend=analytic", f"search.trials={trials}", "search.warmup_epochs=1",
            "search.adapt_steps=3", "model.pretrain.epochs=2", "finetune.epochs=0", "finetune.top_k=1",
            "finetune.baselines=[8]", "export.qonnx=false", "threads=1", "seed=0"]


def run_job(tree: Path, out: Path, trials: int, extra: list[str] = ()) -> tuple[list[dict], float]:
    args = [sys.executable, "-m", "brevitas_amed", "recipe", "-q", "--set", f"output_dir={out}"]
    for item in [*settings(trials), *extra]:
        args += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(tree), "BREVITAS_AMED_CACHE": f"sqlite:///{out.parent / (out.name + '-cache.db')}"}
    started = time.time()
    done = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"job in {tree} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads((out / "trials.json").read_text()), time.time() - started


def comparable(rows: list[dict]) -> list[tuple]:
    return [(r["number"], r["state"], json.dumps(r["params"], sort_keys=True), r["values"]) for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the source tree to compare (default: this checkout)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe setting for this tree only, to match the base's defaults: "
                             "search.bit_choices=all for a base before the latency levels became the default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base_tree = tmp / "base"
        base_tree.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.base], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base_tree)], input=archive, check=True)
        base, base_s = run_job(base_tree, tmp / "out-base", args.trials)
        head, head_s = run_job(args.tree.resolve(), tmp / "out-head", args.trials, args.overrides)
    a, b = comparable(base), comparable(head)
    diffs = [(x, y) for x, y in zip(a, b) if x != y]
    print(f"base {args.base}: {len(a)} trials in {base_s:.1f} s; {args.tree}: {len(b)} trials in {head_s:.1f} s")
    for x, y in diffs:
        print(f"trial {x[0]} differs:\n  base {x[1:]}\n  this {y[1:]}")
    same = len(a) == len(b) and not diffs
    print("same trials: yes" if same else f"same trials: NO ({len(diffs)} differ, lengths {len(a)}/{len(b)})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
