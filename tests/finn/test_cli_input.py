"""The ``finn`` command's input checks, which come before FINN's environment is needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brevitas_amed.cli import main
from brevitas_amed.finn import run_finn


@pytest.mark.parametrize("flag", ["--timeout=0", "--timeout=-5", "--target-fps=0", "--lut-budget=-1",
                                  "--clock-ns=0", "--target-fps=2.5"])
def test_a_non_positive_setting_is_refused_by_name(flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["finn", str(tmp_path), flag])
    assert exit_info.value.code == 2
    assert flag.partition("=")[0] in capsys.readouterr().err


def test_a_job_without_exported_models_is_an_error_not_an_empty_report(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"finals": [{"label": "amed-t1", "qonnx": None}]}))
    with pytest.raises(FileNotFoundError, match="no model with a QONNX export"):
        run_finn(tmp_path, Path("/no/finn/python"))
    assert not (tmp_path / "finn.json").exists()
