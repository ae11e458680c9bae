"""The hardware-claim benchmark's layer classes, class means, latency shares and sensitivity table."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import hardware_claim  # noqa: E402

from hw_backends.workload import Layer, Workload  # noqa: E402

LAYERS = [
    Layer("stem", "conv", 3, 8, in_h=16, in_w=16, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1),
    Layer("dw", "conv", 8, 8, in_h=8, in_w=8, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1, groups=8),
    Layer("pw_early", "conv", 8, 16, in_h=8, in_w=8),
    Layer("pw_late", "conv", 16, 32, in_h=2, in_w=2),
    Layer("grouped", "conv", 16, 16, in_h=2, in_w=2, kernel_h=3, kernel_w=3, pad_h=1, pad_w=1, groups=2),
    Layer("fc", "linear", 32, 10),
]


def test_classes() -> None:
    classes = hardware_claim.classify(Workload("toy", LAYERS))
    assert classes == {"stem": "conv", "dw": "depthwise", "pw_early": "early 1x1", "pw_late": "late 1x1",
                       "grouped": "conv", "fc": "linear"}
    # late = input map at most 4x the smallest conv input map (2x2 here): 8x8 is early
    assert hardware_claim.classify(LAYERS, late_factor=16)["pw_early"] == "late 1x1"


def test_class_means_count_searched_sides_only() -> None:
    classes = hardware_claim.classify(LAYERS)
    bits = {"stem": (8, 8), "dw": (2, 4), "pw_early": (6, 8), "pw_late": (4, 3), "grouped": (8, 8), "fc": (8, 8)}
    means = hardware_claim.class_means(bits, classes, searched_w=["dw", "pw_early", "pw_late"],
                                       searched_a=["dw", "pw_late"])
    assert means["depthwise"] == {"w": 2, "a": 4, "n_w": 1, "n_a": 1}
    assert means["early 1x1"]["w"] == 6 and means["early 1x1"]["a"] is None
    assert means["conv"]["w"] is None and means["conv"]["n_w"] == 0


def test_shares_and_sensitivity() -> None:
    classes = {"a": "depthwise", "b": "late 1x1"}
    shares = hardware_claim.class_shares({"a": 25, "b": 75}, classes)
    assert shares["depthwise"] == 0.25 and shares["late 1x1"] == 0.75 and shares["linear"] == 0

    def costs(c88, c48, c84, c44, c22):
        return {(8, 8): c88, (4, 8): c48, (8, 4): c84, (4, 4): c44, (2, 2): c22}

    table = {"a": costs(100, 100, 100, 100, 100), "b": costs(300, 150, 300, 150, 60)}
    rows = hardware_claim.sensitivity(table, classes, beta=0.4, noise=0.01, searched_w=["a", "b"], searched_a=["b"])
    assert rows["depthwise"]["share8"] == 0.25 and rows["depthwise"]["gain_w"] == 0
    assert math.isnan(rows["depthwise"]["gain_a"])
    assert rows["late 1x1"]["w4/a8"] == 0.5 and rows["late 1x1"]["w8/a4"] == 1.0 and rows["late 1x1"]["2/2"] == 0.2
    assert math.isclose(rows["late 1x1"]["gain_w"], 0.4 * 150 / 400 / 0.01)
    assert "linear" not in rows
    text = hardware_claim.sensitivity_table({"lowmem": {"sensitivity": rows, "classes": classes}})
    assert "| `lowmem` | late 1x1 | 1 | 0.750 | 0.500 | 1.000 | 0.500 | 0.200 | 15.000 | 0.000 |" in text


def test_mean_bits() -> None:
    means = hardware_claim.mean_bits([{"a": (8, 4), "b": (2, 2)}, {"a": (4, 4), "b": (2, 8)}])
    assert means == {"a": (6, 4), "b": (2, 5)}
