"""The distillation benchmark's comparison of two compare_seeds folders (records written here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import distill_gain  # noqa: E402


def _record(folder: Path, seed: int, label: str, bits: dict, key: str, val: float, test: float, latency: float) -> None:
    path = folder / f"seed{seed}" / "models" / f"{label}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"label": label, "method": label.split("-")[0], "knob_bits": bits, "key": key,
                                "val_accuracy": val, "test_accuracy": test, "latency_ratio": latency}))


def test_pair_compares_only_the_same_allocations_fine_tuned_otherwise(tmp_path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _record(a, 0, "amed-t1", {"x": 2}, "k1", 0.980, 0.970, 0.33)
    _record(b, 0, "amed-t1", {"x": 2}, "k2", 0.990, 0.990, 0.33)   # +1 val, +2 test
    _record(a, 1, "tpe-t4", {"x": 8}, "k3", 0.990, 0.990, 0.50)
    _record(b, 1, "tpe-t4", {"x": 8}, "k4", 0.990, 0.980, 0.50)    # 0 val, -1 test
    _record(a, 1, "tpe-t5", {"x": 4}, "k5", 0.990, 0.990, 0.40)
    _record(b, 1, "tpe-t5", {"x": 4}, "k5", 0.900, 0.900, 0.40)    # same key: not fine-tuned again, skipped
    _record(a, 1, "tpe-t6", {"x": 4}, "k6", 0.990, 0.990, 0.40)
    _record(b, 1, "tpe-t6", {"x": 3}, "k7", 0.900, 0.900, 0.40)    # other bits: skipped
    _record(a, 2, "ohq-1", {"x": 4}, "k8", 0.990, 0.990, 0.40)     # only in a: skipped
    distill_gain.pair(a, b)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2 models, ")
    assert "validation +0.50 pt, test +0.50 pt (median +0.50); test better / worse / same: 1 / 1 / 0" in out[0]
    assert "  amed: 1 models, test +2.00 pt" in out
    assert "  tpe: 1 models, test -1.00 pt" in out
    assert "  under 0.42 of the 8-bit latency: 1 models, test +2.00 pt" in out
    assert "  0.42 and above: 1 models, test -1.00 pt" in out


def test_pair_without_a_common_model_says_so(tmp_path) -> None:
    _record(tmp_path / "a", 0, "amed-t1", {"x": 2}, "k1", 0.98, 0.97, 0.33)
    (tmp_path / "b").mkdir()
    with pytest.raises(SystemExit, match="no model of .* was fine-tuned with other settings in"):
        distill_gain.pair(tmp_path / "a", tmp_path / "b")


def test_repeats_names_a_missing_model_before_any_work(tmp_path) -> None:
    _record(tmp_path, 3, "amed-t2", {"x": 2}, "k1", 0.98, 0.97, 0.33)
    folder = tmp_path / "seed3"
    with pytest.raises(SystemExit, match="has no recipe.yaml"):
        distill_gain.repeats(folder, ["amed-t2"], 2)
    (folder / "recipe.yaml").write_text("seed: 3\n")
    with pytest.raises(SystemExit, match="has no fine-tuned model tpe-t9; it has amed-t2"):
        distill_gain.repeats(folder, ["amed-t2", "tpe-t9"], 2)
