"""Finding FINN's environment, without FINN: the error a user sees when it is missing."""

from __future__ import annotations

import pytest

from brevitas_amed.cli import main
from brevitas_amed.finn.env import ENV_VAR, FinnEnvError, default_venv, finn_python, venv_path


def test_missing_environment_is_one_line_exit_2_saying_how_to_build_it(tmp_path, capsys):
    (tmp_path / "summary.json").write_text("{}")
    assert main(["finn", str(tmp_path), "--finn-venv", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no FINN environment at" in err and "brevitas-amed finn --setup" in err


def test_option_then_variable_then_default(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert venv_path() == default_venv() and default_venv().name == ".finn-venv"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert venv_path() == tmp_path / "env"
    assert venv_path(tmp_path / "opt") == tmp_path / "opt"


def test_a_broken_environment_is_an_error_not_a_skip(tmp_path):
    python = tmp_path / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\necho 'No module named finn' >&2\nexit 1\n")
    python.chmod(0o755)
    with pytest.raises(FinnEnvError, match="cannot import FINN"):
        finn_python(tmp_path)


def test_no_output_dir_and_no_setup_is_an_error(capsys):
    assert main(["finn"]) == 2
    assert "output_dir" in capsys.readouterr().err
