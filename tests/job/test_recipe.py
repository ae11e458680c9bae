"""Recipes: validation, overrides, and malformed recipes failing cleanly on the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brevitas_amed.cli import main
from brevitas_amed.job.recipe import Recipe, RecipeError, load_recipe

REPO = Path(__file__).resolve().parents[2]


def test_digits_yaml_is_the_built_in_default():
    assert load_recipe(REPO / "recipes" / "digits.yaml") == Recipe() == load_recipe(None)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0"])
def test_imagenet_recipes_validate(name):
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml")
    assert recipe.model.name == name and recipe.data.name == "imagefolder"


def test_overrides_parse_yaml_values():
    r = load_recipe(None, ["search.trials=7", "quantization.weight_bits=[4, 8]", "finetune.distill=true",
                           "search.sampler=tpe", "finetune.baselines=[8, 4]"])
    assert (r.search.trials, r.quantization.weight_bits, r.finetune.distill, r.search.sampler) == (7, [4, 8], True, "tpe")


BAD_RECIPES = [
    # (recipe text or None for the default, overrides, words the one-line message must contain)
    ("colour: red\n", [], ["colour", "unknown field", "allowed here"]),
    ("search:\n  trails: 5\n", [], ["search.trails", "unknown field", "trials"]),
    ("search:\n  trials: -5\n", [], ["search.trials", "greater than or equal to 1"]),
    ("search:\n  sampler: cmaes\n", [], ["search.sampler", "amed"]),
    ("quantization:\n  weight_bits: [4, 9]\n", [], ["quantization.weight_bits", "2..8"]),
    ("quantization:\n  first_layer: half\n", [], ["quantization.first_layer"]),
    ("data:\n  name: imagefolder\n", [], ["data.path is required"]),
    ("data:\n  name: imagefolder\n  path: /no/such/imagenet\n", [], ["set data.path"]),
    ("search: [1, 2\n", [], ["not valid YAML", "line"]),
    ("- just\n- a list\n", [], ["must be a mapping"]),
    ("model:\n  name: resnet19\ndata:\n  channels: 3\n", [], ["unknown model 'resnet19'"]),
    ("model:\n  weights: /no/such/weights.pt\n", [], ["weights file", "does not exist"]),
    ("hardware:\n  backend: gem5\n", [], ["unknown hardware backend 'gem5'", "analytic"]),
    ("hardware:\n  profile: /no/such/profile.yaml\n", [], ["profile"]),
    ("finetune:\n  baselines: [5]\n", [], ["finetune.baselines", "5 bits"]),
    ("quality:\n  accuracy_threshold: 0.9\n", [], ["either quality.accuracy_threshold or quality.max_accuracy_drop"]),
    ("search:\n  trials: many\n", [], ["search.trials", "integer"]),
    ("model:\n  name: resnet18\n", [], ["data.channels: 3"]),
    ("search:\n  trials: true\n", [], ["search.trials", "valid integer", "True"]),
    ("search:\n  trials: 3.0\n", [], ["search.trials", "valid integer"]),
    ("finetune:\n  distill: 1\n", [], ["finetune.distill", "valid boolean"]),
    (None, ["finetune.candidates=best"], ["finetune.candidates", "'quality' or 'spread'"]),
    ("search:\n  storage: 'notadb://x'\n", [], ["search.storage='notadb://x'", "not a usable database URL"]),
    ("search:\n  storage: 'journal:'\n", [], ["search.storage='journal:'", "give the journal file"]),
    ("device: gpu\n", [], ["device: device must be auto, cpu, cuda or cuda:N", "'gpu'"]),
    ("model:\n  name: os:system\n", [], ["model 'os:system'", "takes num_classes"]),
    ("quality:\n  size_limit_kb: 1\n", [], ["quality.size_limit_kb=1", "smallest allocation"]),
    (None, ["search.trials"], ["--set", "key=value"]),
    (None, ["search=3", "search.trials=2"], ["not a section"]),
]


@pytest.mark.parametrize("text, overrides, words", BAD_RECIPES, ids=[f"bad{i}" for i in range(len(BAD_RECIPES))])
def test_malformed_recipe_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, text, overrides, words):
    monkeypatch.chdir(tmp_path)
    args = ["recipe"]
    if text is not None:
        (tmp_path / "bad.yaml").write_text(text)
        args.append("bad.yaml")
    for o in overrides:
        args += ["--set", o]
    args += ["--set", f"output_dir={tmp_path / 'out'}"] if not overrides else []
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("brevitas-amed: error: ")
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written in (["bad.yaml"], []), written


def test_missing_recipe_file_in_a_real_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "brevitas_amed", "recipe", str(tmp_path / "nope.yaml")],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"brevitas-amed: error: recipe file {str(tmp_path / 'nope.yaml')!r} does not exist; give a path like recipes/digits.yaml"]
    assert list(tmp_path.iterdir()) == []


def test_dry_run_prints_the_resolved_recipe(capsys):
    assert main(["recipe", "--dry-run", "--set", "search.trials=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["search"]["trials"] == 3


def test_recipe_error_is_a_value_error():
    with pytest.raises(RecipeError):
        load_recipe(None, ["search.trials=0"])
    assert issubclass(RecipeError, ValueError)


def test_closed_output_pipe_is_not_an_error(tmp_path):
    """`brevitas-amed backends | head -1`: the reader leaving early is no error to report."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "brevitas_amed", "backends"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    proc.stdout.close()  # before the command has printed anything
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    assert "error" not in err


def test_a_binary_file_is_named_as_not_a_text_recipe(tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"\xff\xfe\x00binary")
    assert main(["recipe", str(tmp_path / "model.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"brevitas-amed: error: {tmp_path / 'model.pt'}: not a text recipe (byte 0 is not UTF-8); "
                   f"give a YAML file like recipes/digits.yaml"]


def test_numbers_follow_yaml_1_2(tmp_path):
    (tmp_path / "r.yaml").write_text("search:\n  adapt_lr: 1e-3\nfinetune:\n  lr: 2.5E-4\n")
    recipe = load_recipe(tmp_path / "r.yaml", ["quality.beta=5e-2"])
    assert (recipe.search.adapt_lr, recipe.finetune.lr, recipe.quality.beta) == (0.001, 0.00025, 0.05)
    assert load_recipe(None, ["search.adapt_lr=3"]).search.adapt_lr == 3.0  # an int is a fine float


def test_a_cache_for_the_analytic_backend_is_refused_before_anything_runs():
    with pytest.raises(RecipeError, match="analytic backend .* keeps no cache; remove hardware.cache"):
        load_recipe(None, ["hardware.backend=analytic", "hardware.cache=sqlite:////tmp/latency.db"])
    assert load_recipe(None, ["hardware.backend=scalesim", "hardware.cache=sqlite:////tmp/latency.db"]).hardware.cache


def test_the_lowmem_recipes_use_the_analytic_backend():
    for name in ("mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0"):
        recipe = load_recipe(f"recipes/{name}.yaml", [])
        assert (recipe.hardware.backend, recipe.hardware.profile) == ("analytic", "lowmem")
