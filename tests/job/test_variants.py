"""The job through the paths a recipe can choose: the real SCALE-Sim backend and its cache, the
command backend, synthetic and ImageFolder data, a weights file, every sampler, distillation,
export without verification, compare with a study name, a moved output folder, the CLI's output."""

from __future__ import annotations

import shutil

import optuna
import pytest
import sqlalchemy
import torch
from PIL import Image

from brevitas_amed.cli import main
from brevitas_amed.job.compare import run_compare
from brevitas_amed.job.run import run
from brevitas_amed.training.models import build_model
from tests.job.tiny import REPO, tiny_recipe, trials_of

pytestmark = pytest.mark.slow


def cache_rows(path) -> int:
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        table = next(iter(sqlalchemy.inspect(conn).get_table_names()))
        return conn.execute(sqlalchemy.text(f"select count(*) from {table}")).scalar_one()


def test_default_backend_is_the_real_scalesim_and_a_warm_cache_simulates_nothing(tmp_path):
    cache = tmp_path / "latency.db"
    common = ["hardware.backend=scalesim", f"hardware.cache=sqlite:///{cache}", "finetune.baselines=[8]",
              "finetune.top_k=1", "export.qonnx=false"]
    cold = run(tiny_recipe(tmp_path / "cold", *common), progress=None)
    rows = cache_rows(cache)
    assert rows > 0 and cold.backend == "scalesim" and cold.uniform8_latency_cycles > 0
    warm = run(tiny_recipe(tmp_path / "warm", *common), progress=None)
    assert cache_rows(cache) == rows  # every simulation came from the cache
    assert warm.uniform8_latency_cycles == cold.uniform8_latency_cycles


def test_synthetic_data_nsga2_distillation_and_export_without_verification(tmp_path):
    summary = run(tiny_recipe(tmp_path, "data.name=synthetic", "data.synthetic_samples=120", "search.sampler=nsga2",
                              "finetune.distill=true", "export.verify=false"), progress=None)
    assert summary.sampler == "nsga2" and summary.trials == 4
    assert all(f.qonnx is not None and f.qonnx.verified is None for f in summary.finals)
    assert all((tmp_path / f.qonnx.path).is_file() for f in summary.finals)
    assert "| not run |" in (tmp_path / "report.md").read_text()


def test_imagefolder_weights_file_random_sampler_and_command_backend(tmp_path):
    data = tmp_path / "images"
    for split in ("train", "val"):
        for c, cls in enumerate(("a", "b")):
            (data / split / cls).mkdir(parents=True)
            for i in range(8):
                Image.new("RGB", (12, 12), color=(200 * c, 25 * i, 90)).save(data / split / cls / f"{i}.png")
    torch.manual_seed(0)
    weights = tmp_path / "digits_cnn.pt"
    torch.save(build_model("digits_cnn", 2, in_channels=3).state_dict(), weights)
    profile = REPO / "examples" / "command_profile.yaml"
    summary = run(tiny_recipe(tmp_path / "out", "data.name=imagefolder", f"data.path={data}", "data.image_size=8",
                              "data.channels=3", "data.batch_size=4", f"model.weights={weights}",
                              "search.sampler=random", "hardware.backend=command", f"hardware.profile={profile}",
                              f"hardware.cache=sqlite:///{tmp_path / 'cache.db'}"), progress=None)
    assert summary.profile == "roofline-demo" and summary.sampler == "random"
    assert all(f.latency_cycles > 0 for f in summary.finals)
    u8 = next(f for f in summary.finals if f.label == "uniform-8")
    u4 = next(f for f in summary.finals if f.label == "uniform-4")
    assert u4.latency_cycles < u8.latency_cycles


def test_compare_gives_each_method_its_own_study_even_with_a_study_name(tmp_path):
    recipe = tiny_recipe(tmp_path, "search.study_name=shared", "finetune.top_k=1", "finetune.baselines=[8]",
                         "export.qonnx=false")
    result = run_compare(recipe, ["amed", "tpe", "nsga2", "random"], progress=None)
    names = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'study.db'}")}
    assert names == {"shared", "shared-tpe", "shared-nsga2", "shared-random"}
    for name in names:
        assert len(trials_of(tmp_path, name)) == 4  # no method sees another's trials
    for f in result.finals:
        if f.kind == "search":
            assert f.trial in {t.number for t in trials_of(tmp_path, {"amed": "shared"}.get(f.method, f"shared-{f.method}"))}


def test_cli_success_output_and_a_report_from_a_moved_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = ["recipe"]
    for item in ["hardware.backend=analytic", "search.trials=3", "search.warmup_epochs=1", "search.adapt_steps=1",
                 "model.pretrain.epochs=1", "finetune.epochs=1", "finetune.top_k=1", "finetune.baselines=[8]",
                 "export.verify_samples=2", f"output_dir={out}"]:
        args += ["--set", item]
    assert main(args + ["-q"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("float test accuracy ") and printed[-1].startswith(f"report: {out}/report.md")
    assert any(line.startswith("* amed-t") and "qonnx pass" in line for line in printed), printed
    moved = shutil.move(str(out), str(tmp_path / "elsewhere"))
    monkeypatch.chdir(REPO)
    (tmp_path / "elsewhere" / "pareto.png").unlink()
    assert main(["report", moved]) == 0
    assert (tmp_path / "elsewhere" / "pareto.png").is_file()
    assert main(["compare", *args[1:], "--set", f"output_dir={moved}", "--methods", "uniform", "-q"]) == 0
    table = capsys.readouterr().out
    assert "| uniform | uniform-8 |" in table and table.rstrip().endswith("compare.png")
