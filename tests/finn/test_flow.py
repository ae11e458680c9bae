"""FINN's real flow on a tiny job's exported models, in FINN's own environment.

Skipped only when that environment does not exist (``brevitas-amed finn --setup`` builds it;
``.ci/run`` does); an environment that exists but cannot import FINN fails.
"""

from __future__ import annotations

import json

import pytest

from brevitas_amed.cli import main
from brevitas_amed.finn.check import weight_bit_mismatches
from tests.job.tiny import tiny_recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def job(finn_env, tmp_path_factory):
    from brevitas_amed.job.run import run

    out = tmp_path_factory.mktemp("finn_digits")
    # a searched allocation with low, mixed bits, so FINN sees weights other than 8 and 4
    summary = run(tiny_recipe(out, "finetune.baselines=[3]", "finetune.top_k=1"), progress=None)
    return out, summary


def test_searched_model_passes_finn_with_its_chosen_weight_bits(job):
    out, summary = job
    label = summary.best
    assert main(["finn", str(out), "--models", label, "--target-fps", "20000"]) == 0
    report = json.loads((out / "finn.json").read_text())
    (entry,) = report["models"]
    assert entry["label"] == label and entry["ok"], entry
    assert entry["weight_bits_match"] and entry["weight_bit_problems"] == []
    chosen = next(f for f in summary.finals if f.label == label).bits
    assert [n["weight_dtype"] for n in entry["layers"]] == [f"INT{chosen[n['layer']][0]}" for n in entry["layers"]]
    assert {n["layer"] for n in entry["layers"]} == set(chosen)
    # the streamlined integer graph computes what the QONNX model computes
    assert entry["streamlined_max_abs_diff"] == 0.0
    assert entry["accelerator_input_dtype"] == "INT8" and entry["accelerator_output_dtype"].startswith("INT")
    assert entry["finn_throughput_fps"] >= 20000 * 0.9 and entry["LUT"] > 0 and entry["BRAM_18K"] > 0
    md = (out / "finn.md").read_text()
    assert f"| {label} |" in md and "weight dtypes = chosen bits" in md


def test_the_check_catches_a_record_that_disagrees_with_finn(job):
    out, summary = job
    result = json.loads((out / "finn" / summary.best / "result.json").read_text())
    chosen = {k: list(v) for k, v in next(f for f in summary.finals if f.label == summary.best).bits.items()}
    assert weight_bit_mismatches(result["layers"], chosen) == []
    chosen["conv2.0"][0] = 2 if chosen["conv2.0"][0] != 2 else 5
    (problem,) = weight_bit_mismatches(result["layers"], chosen)
    assert "(conv2.0): FINN weight datatype" in problem


def test_lut_budget_folding_stays_within_the_budget(job):
    out, _ = job
    assert main(["finn", str(out), "--models", "uniform-3", "--lut-budget", "12000"]) == 0
    report = json.loads((out / "finn.json").read_text())
    (entry,) = report["models"]
    assert report["settings"]["lut_budget"] == 12000 and report["settings"]["target_fps"] is None  # not used
    assert entry["ok"] and entry["weight_bits_match"] and entry["lut_budget"] == 12000
    assert 0 < entry["LUT"] <= 12000 and entry["finn_throughput_fps"] > 0
    assert all(n["weight_dtype"] == "INT3" for n in entry["layers"] if n["layer"] not in ("stem.0", "fc"))
