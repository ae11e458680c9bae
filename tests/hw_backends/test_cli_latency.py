"""``brevitas-amed latency`` and ``brevitas-amed backends`` through the CLI's main()."""

from __future__ import annotations

import json

import pytest

import hw_backends
from brevitas_amed.cli import main


@pytest.fixture
def workload_file(tmp_path, small_workload):
    path = tmp_path / "small.json"
    path.write_text(json.dumps(small_workload.to_dict()))
    return path


def test_backends_lists_backends_and_profiles(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "analytic:" in out and "scalesim:" in out and "12x14 WS" in out
    assert main(["backends", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == hw_backends.available()


def test_latency_table_from_workload_file(workload_file, small_workload, capsys):
    assert main(["latency", "--workload", str(workload_file), "--profile", "eyeriss", "--bits", "4,2"]) == 0
    out = capsys.readouterr().out
    expected = hw_backends.get("analytic", profile="eyeriss").latency(small_workload, small_workload.uniform_bits(4, 2))
    assert f"{expected.cycles:,}" in out
    assert all(name in out for name in small_workload.names) and "4/2" in out


def test_latency_model_with_per_layer_bits_file(tmp_path, capsys):
    pytest.importorskip("torchvision")
    assert main(["latency", "--model", "resnet18", "--input-size", "64", "--json"]) == 0
    names = list(json.loads(capsys.readouterr().out)["per_layer"])
    bits_file = tmp_path / "bits.yaml"
    bits_file.write_text("\n".join(f"{name}: [{2 if i % 2 else 8}, 4]" for i, name in enumerate(names)))
    assert main(["latency", "--model", "resnet18", "--input-size", "64", "--bits", str(bits_file),
                 "--profile", "lowmem", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["profile"] == "lowmem" and set(report["per_layer"]) == set(names)


def test_precompute_fills_the_scalesim_cache(workload_file, cache_url, capsys):
    args = ["latency", "--workload", str(workload_file), "--backend", "scalesim", "--cache", cache_url,
            "--precompute", "4,8", "--bits", "4"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "precomputed 5 layers x 4 bit pairs" in captured.out
    assert "SCALE-Sim scalesim" in captured.err  # the progress bar
    assert main(["latency", "--workload", str(workload_file), "--backend", "scalesim", "--cache", cache_url,
                 "--bits", "8,4", "--timeout", "1e-9"]) == 0  # answered from the cache only


@pytest.mark.parametrize("args, message", [
    (["--bits", "9"], "layer 'conv3x3': weight bits must be an int in 1..8, got 9"),
    (["--bits", "four"], "--bits must be 'B', 'W,A' or an existing bits file"),
    (["--backend", "nope"], "unknown hardware backend 'nope'; known backends: analytic, command, finn, scalesim"),
    (["--profile", "nope.yaml"], "unknown profile 'nope.yaml'"),
    (["--workers", "2"], "--workers only applies to --backend scalesim"),
    (["--bits", "missing.json"], "cannot read bits file missing.json"),
])
def test_bad_argument_is_one_line_and_exit_2(workload_file, capsys, args, message):
    assert main(["latency", "--workload", str(workload_file), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_unknown_model_is_exit_2(capsys):
    pytest.importorskip("torchvision")
    assert main(["latency", "--model", "resnet7"]) == 2
    assert "unknown torchvision model 'resnet7'" in capsys.readouterr().err
