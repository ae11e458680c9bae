"""Report drawing: labels of models at one point are merged; reports read old records."""

from __future__ import annotations

from matplotlib.figure import Figure

from brevitas_amed.job.records import FinalModel
from brevitas_amed.job.report import label_points


def final(label: str, latency: float, acc: float) -> FinalModel:
    return FinalModel(label=label, kind="baseline", method="uniform", knob_bits={}, latency_ratio=latency,
                      test_accuracy=acc)


def test_models_at_one_point_share_one_label():
    ax = Figure().subplots()
    label_points(ax, [final("uniform-8", 1.0, 0.99), final("uniform-6", 1.0, 0.99), final("uniform-4", 0.5, 0.98)],
                 lambda f: f.label.replace("uniform-", "") + "b")
    assert sorted(t.get_text() for t in ax.texts) == ["4b", "8b/6b"]


def test_a_record_written_before_candidates_had_a_method_still_reads():
    old = {"label": "amed-t3", "kind": "search", "knob_bits": {"fc": 8}, "trial": 3, "test_accuracy": 0.9,
           "checkpoint": "runs/digits/models/amed-t3.pt", "qonnx": {"path": "m.onnx", "verified": True}}
    record = FinalModel.from_dict(old)
    assert record.method == "amed" and record.qonnx.verified is True
    assert FinalModel.from_dict({**old, "kind": "baseline", "label": "uniform-4"}).method == "uniform"
