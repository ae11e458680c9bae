"""The FINN tests need FINN's own environment (`brevitas-amed finn --setup`; `.ci/run` builds it)."""

from __future__ import annotations

import json
import subprocess

import pytest

from brevitas_amed.finn.env import finn_python, venv_path, venv_python


@pytest.fixture(scope="session")
def finn_env():
    """FINN's Python; the test is skipped where the environment was never built (a broken one fails)."""
    if not venv_python(venv_path()).is_file():
        pytest.skip(f"no FINN environment at {venv_path()}: build it with `brevitas-amed finn --setup`")
    return finn_python()


@pytest.fixture
def finn_flow(finn_env):
    """``finn_flow(model, out)``: FINN's whole flow (the runner, 1,000 frames/s) on an exported
    model; its ``result.json``, once the run is checked to have passed with a streamlined graph
    exactly equal to the QONNX model."""
    from brevitas_amed.finn.flow import RUNNER

    def run(path, out) -> dict:
        run = subprocess.run([str(finn_env), str(RUNNER), str(path), str(out), "--target-fps", "1000"],
                             capture_output=True, text=True, timeout=900)
        assert (out / "result.json").is_file(), run.stderr[-3000:]
        result = json.loads((out / "result.json").read_text())
        assert run.returncode == 0 and result["ok"], result.get("error") or run.stdout[-2000:]
        assert result["streamlined_max_abs_diff"] == 0.0
        return result
    return run
