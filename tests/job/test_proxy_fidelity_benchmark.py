"""The proxy-fidelity benchmark keeps an earlier run's measurements only if they were made with the
same job and fine-tuning settings (rows written here; no job is built)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from brevitas_amed.job.recipe import load_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import proxy_fidelity  # noqa: E402
import proxy_tables  # noqa: E402


def _rows(path: Path, recipe, labels=("uniform-8", "random-0-23"), bn_batches: int = 8) -> None:
    path.write_text(json.dumps([{"label": label, "settings": proxy_fidelity.measured_with(recipe, bn_batches),
                                 "latency_ratio": 1.0, "proxies": {}, "ft": [[0.98, 0.97, 5.0]]} for label in labels]))


def test_rows_of_the_same_settings_are_kept_whatever_the_output_folder(tmp_path) -> None:
    path = tmp_path / "pf.json"
    _rows(path, load_recipe(None, [f"output_dir={tmp_path / 'a'}"]))
    now = load_recipe(None, [f"output_dir={tmp_path / 'b'}", "search.bit_choices=all"])  # not what the rows measure
    kept = proxy_fidelity.reusable(str(path), proxy_fidelity.measured_with(now, 8))
    assert sorted(kept) == ["random-0-23", "uniform-8"]
    assert kept["uniform-8"]["ft"] == [[0.98, 0.97, 5.0]]


@pytest.mark.parametrize("then, now, named", [
    (["finetune.distill=false"], [], "finetune.distill"),
    ([], ["finetune.epochs=3"], "finetune.epochs"),
    ([], ["seed=1"], "job.seed"),
    ([], ["search.adapt_steps=30"], "job.search.adapt_steps"),
    (["quantization.first_layer=float"], [], "job.quantization.first_layer"),
])
def test_rows_measured_otherwise_are_refused_with_what_differs(tmp_path, then, now, named) -> None:
    path = tmp_path / "pf.json"
    _rows(path, load_recipe(None, then))
    with pytest.raises(SystemExit, match="random-0-23|uniform-8") as err:
        proxy_fidelity.reusable(str(path), proxy_fidelity.measured_with(load_recipe(None, now), 8))
    assert named in str(err.value) and "--set" in str(err.value)


def test_rows_of_other_bn_batches_are_refused(tmp_path) -> None:
    path = tmp_path / "pf.json"
    _rows(path, load_recipe(None), bn_batches=4)
    with pytest.raises(SystemExit, match="bn_batches"):
        proxy_fidelity.reusable(str(path), proxy_fidelity.measured_with(load_recipe(None), 8))


def test_rows_of_a_version_that_did_not_record_settings_are_refused(tmp_path) -> None:
    path = tmp_path / "pf.json"
    path.write_text(json.dumps([{"label": "uniform-8", "latency_ratio": 1.0, "proxies": {}, "ft": []}]))
    with pytest.raises(SystemExit, match="does not record the settings"):
        proxy_fidelity.reusable(str(path), proxy_fidelity.measured_with(load_recipe(None), 8))


def test_the_report_ranks_the_fine_tuned_validation_against_test(capsys) -> None:
    """How far the splits agree: the fine-tuned models' validation accuracy ranked against their
    test accuracy (here in the same order, then in the reverse order)."""
    from types import SimpleNamespace

    job = SimpleNamespace(data=SimpleNamespace(val=range(359), test=range(360)),
                          float_accuracy=SimpleNamespace(test=0.99))
    rows = [{"label": f"a{i}", "latency_ratio": 0.5, "proxies": {"recipe": [0.9 + i / 100, 0.5]},
             "ft": [[0.95 + i / 100, 0.97 + i / 200, 6.0], [0.95 + i / 100, 0.97 + i / 200, 6.0]]} for i in range(4)]
    proxy_tables.report(job, rows)
    row = next(line for line in capsys.readouterr().out.splitlines() if "fine-tuned validation (mean of 2) vs test" in line)
    assert row.split("|")[2].strip() == "1.000"
    for r in rows:
        r["ft"] = [[1.0 - v, t, s] for v, t, s in r["ft"]]
    proxy_tables.report(job, rows)
    row = next(line for line in capsys.readouterr().out.splitlines() if "fine-tuned validation (mean of 2) vs test" in line)
    assert row.split("|")[2].strip() == "-1.000"


def test_the_same_images_table_ranks_each_split_against_its_own_reference(capsys) -> None:
    """A proxy read on validation is ranked against the fine-tuned validation accuracy and its model
    read on test against the fine-tuned test accuracy; draws are averaged; a proxy measured without
    a test reading (an older run) is left out."""
    from types import SimpleNamespace

    job = SimpleNamespace(data=SimpleNamespace(val=range(359), test=range(360)),
                          float_accuracy=SimpleNamespace(test=0.99))
    # validation: proxy and fine-tuning agree; test: the proxy's model ranks in the reverse order
    rows = [{"label": f"a{i}", "latency_ratio": 0.5,
             "proxies": {"bn": [0.9 + i / 100, 0.3, 0.99 - i / 100], "bn#2": [0.91 + i / 100, 0.3, 0.98 - i / 100],
                         "recipe": [0.9 + i / 100, 0.5]},
             "ft": [[0.95 + i / 100, 0.97 + i / 200, 6.0], [0.95 + i / 100, 0.97 + i / 200, 6.0]]} for i in range(4)]
    proxy_tables.report(job, rows)
    out = capsys.readouterr().out
    table = out[out.index("The same images"):]
    bn = next(line for line in table.splitlines() if line.startswith("| bn |")).split("|")
    assert [c.strip() for c in bn[2:6]] == ["1.000", "-1.000", "1.000", "-1.000"]
    assert "| recipe |" not in table
    assert "ceiling" in table


def test_one_fine_tuning_is_ranked_against_the_mean_of_the_others() -> None:
    """On validation fine-tuning 0 ranks the four allocations in reverse (by a little), 1 and 2 in
    order: against the mean of the other two, 0 reads -1 and 1, 2 read 1 each. On test all agree."""
    rows = [{"ft": [[0.95 - i / 1000, 0.96 + i / 300, 5.0], [0.95 + i / 100, 0.96 + i / 100, 5.0],
                    [0.95 + i / 100, 0.96 + i / 200, 5.0]]} for i in range(4)]
    assert proxy_tables.one_finetune(rows, 3, 0, 0) == (1.0, -1.0, 1.0)
    assert proxy_tables.one_finetune(rows, 3, 1, 1) == (1.0, 1.0, 1.0)
    assert proxy_tables.one_finetune(rows, 3, 0, 1)[1] == -1.0  # 0's validation against the others' test
