"""The 5-seed compare benchmark's choice of each method's model and its table."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import compare_seeds  # noqa: E402

from brevitas_amed.job.records import Accuracy, Comparison, FinalModel, SearchCompute  # noqa: E402


def _final(method: str, label: str, val: float, test: float, latency: float) -> FinalModel:
    return FinalModel(label=label, kind="search", method=method, knob_bits={}, val_accuracy=val,
                      test_accuracy=test, latency_ratio=latency)


def _comparison() -> Comparison:
    finals = [_final("amed", "amed-t1", 0.980, 0.990, 0.40),   # within 1 pt on validation: chosen
              _final("amed", "amed-t2", 0.970, 0.995, 0.30),   # faster, but 1.6 pt down on validation
              _final("amed", "amed-t3", 0.985, 0.990, 0.45),
              _final("tpe", "tpe-t1", 0.960, 0.990, 0.35)]     # none within: the 8-bit fallback
    return Comparison(recipe="digits", float_accuracy=Accuracy(val=0.986, test=0.997), uniform8_latency_cycles=100,
                      backend="analytic", profile="scalesim", methods=["amed", "tpe"], finals=finals,
                      compute=[SearchCompute("amed", 120, 80.0, 90), SearchCompute("tpe", 120, 70.0, 118)])


def test_fastest_model_within_one_point_is_chosen_on_validation() -> None:
    result = _comparison()
    amed = compare_seeds.fastest_within(result, "amed", 0.01)
    assert amed["label"] == "amed-t1" and amed["latency_ratio"] == 0.40
    assert abs(amed["test_drop_pt"] - 0.7) < 1e-9
    assert compare_seeds.fastest_within(result, "tpe", 0.01) == {"label": None, "latency_ratio": 1.0,
                                                                  "test_drop_pt": None}


def test_table_has_medians_compute_and_verdict(capsys) -> None:
    rows = [compare_seeds.seed_row(s, _comparison(), ["amed", "tpe"], 0.01, 1.0) for s in range(3)]
    compare_seeds.print_table(rows, ["amed", "tpe"])
    out = capsys.readouterr().out
    assert "| **median** | **0.400** | **1.000** |" in out
    assert "| median, chosen on test (oracle) | 0.300 | 0.350 |" in out
    assert "| search compute (median) | 120 trials, 80 s | 120 trials, 70 s |" in out
    assert "target (AMED no higher than any other method) met over 3 seeds" in out

