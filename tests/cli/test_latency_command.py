"""``brevitas-amed latency --backend command``: a user's measuring program through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from brevitas_amed.cli import main

PROFILE = Path(__file__).resolve().parents[2] / "examples" / "command_profile.yaml"


def test_latency_measured_by_a_program_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BREVITAS_AMED_CACHE", f"sqlite:///{tmp_path / 'cache.db'}")
    reports = {}
    for bits in ("8", "4"):
        assert main(["latency", "--model", "resnet18", "--input-size", "32", "--backend", "command",
                     "--profile", str(PROFILE), "--bits", bits, "--json"]) == 0
        reports[bits] = json.loads(capsys.readouterr().out)
    assert reports["8"]["profile"] == "roofline-demo" and len(reports["8"]["per_layer"]) == 21
    assert reports["8"]["cycles"] == sum(layer["cycles"] for layer in reports["8"]["per_layer"].values())
    assert 0 < reports["4"]["cycles"] < reports["8"]["cycles"]
    assert main(["latency", "--model", "resnet18", "--backend", "command", "--profile", str(tmp_path / "no.yaml")]) == 2
    assert "no.yaml" in capsys.readouterr().err
