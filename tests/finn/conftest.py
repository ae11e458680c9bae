"""The FINN tests need FINN's own environment (`brevitas-amed finn --setup`; `.ci/run` builds it)."""

from __future__ import annotations

import pytest

from brevitas_amed.finn.env import finn_python, venv_path, venv_python


@pytest.fixture(scope="session")
def finn_env():
    """FINN's Python; the test is skipped where the environment was never built (a broken one fails)."""
    if not venv_python(venv_path()).is_file():
        pytest.skip(f"no FINN environment at {venv_path()}: build it with `brevitas-amed finn --setup`")
    return finn_python()
