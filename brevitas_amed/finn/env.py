"""FINN's own virtual environment: where it is, and how to build it.

FINN (the maintained fork ``finn-plus`` on PyPI) pins brevitas 0.13.0, onnx 1.21, onnxruntime
1.25.1 and protobuf 5.29.6, so it never shares brevitas-amed's environment: the FINN flow runs
as a subprocess with this environment's python. Looked up in order: the ``--finn-venv`` option,
the ``BREVITAS_AMED_FINN_VENV`` variable, then ``.finn-venv`` next to the project (the folder
holding ``pyproject.toml`` above this package, else the current directory).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENV_VAR = "BREVITAS_AMED_FINN_VENV"
TORCH_VAR = "BREVITAS_AMED_FINN_TORCH"
FINN = "finn-plus==1.6.1"
# finn-plus's own requirements, installed explicitly: pip cannot resolve them as declared
# (brevitas 0.13.0 wants setuptools<70, every torch since 2.13 setuptools>=77, so pip falls back
# to torch 2.12). brevitas and finn-plus go in with --no-deps; FINN's estimate flow never
# imports brevitas. cmake (only for FINN's Vivado simulator build) is left out, psutil (imported
# by FINN, not declared) is added.
REQUIREMENTS = [
    "qonnx==1.0.0", "onnx==1.21.0", "onnxruntime==1.25.1", "protobuf==5.29.6", "numpy>=2.4.6,<2.5.0",
    "onnx-ir>=0.1.15", "onnx-passes>=0.4.0", "onnxoptimizer>=0.4.2,<0.5.0", "onnxscript>=0.7.0",
    "bitstring>=4.3.1,<4.4.0", "click>=8.1.8,<9.0.0", "mashumaro[yaml]>=3.15,<4.0",
    "matplotlib>=3.10.9,<3.11.0", "mip==1.17.0", "pandas>=2.3.1,<2.4.0", "pybind11==3.0.1",
    "pydantic>2.0", "pyyaml>=6.0.2,<6.1.0", "rich>=13.9.4,<14.0.0", "scikit-learn>=1.7.2,<1.8.0",
    "scipy>=1.17.0,<1.18.0", "termcolor>=2.5.0,<3.0.0", "psutil",
    # qonnx's and brevitas' own requirements
    "attrs>=22.2.0", "clize>=5.0.1", "sigtools>=4.0.1", "toposort>=1.7.0", "importlib-metadata",
    "dependencies==2.0.1", "packaging", "sympy", "typing-extensions", "unfoldNd",
]


class FinnEnvError(RuntimeError):
    """FINN's environment is missing or broken; the message says how to build it."""


def project_root() -> Path:
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def default_venv() -> Path:
    return project_root() / ".finn-venv"


def venv_path(option: str | os.PathLike | None = None) -> Path:
    """The FINN environment to use (it may not exist yet)."""
    return Path(option or os.environ.get(ENV_VAR) or default_venv())


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def finn_python(option: str | os.PathLike | None = None) -> Path:
    """The python of a FINN environment that imports ``finn``.

    Raises:
        FinnEnvError: the environment is missing or cannot import FINN.
    """
    venv = venv_path(option)
    python = venv_python(venv)
    how = f"build it with `brevitas-amed finn --setup` (or point --finn-venv / {ENV_VAR} at one)"
    if not python.is_file():
        raise FinnEnvError(f"no FINN environment at {venv}: {how}")
    probe = subprocess.run([str(python), "-c", "import finn.transformation.streamline, qonnx"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise FinnEnvError(f"the FINN environment at {venv} cannot import FINN ({last}): {how}")
    return python


def torch_requirement() -> str:
    """torch for the FINN environment: ``BREVITAS_AMED_FINN_TORCH`` if set, else the torch
    version of this environment (FINN only needs it importable)."""
    if os.environ.get(TORCH_VAR):
        return os.environ[TORCH_VAR]
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "torch==" + version("torch")
    except PackageNotFoundError:
        return "torch"


def setup_venv(option: str | os.PathLike | None = None, python: str = sys.executable,
               log=print) -> Path:
    """Create (or complete) the FINN environment; returns its python.

    Raises:
        FinnEnvError: a step of the installation failed.
    """
    venv = venv_path(option)
    steps = []
    if not venv_python(venv).is_file():
        steps.append([python, "-m", "venv", str(venv)])
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-compile"]
    steps += [pip + [torch_requirement()], pip + ["--no-deps", FINN, "brevitas==0.13.0"], pip + REQUIREMENTS]
    for cmd in steps:
        log("+ " + " ".join(cmd))
        if subprocess.run(cmd).returncode != 0:
            raise FinnEnvError(f"building the FINN environment failed at: {' '.join(cmd)}")
        if cmd[1:3] == ["-m", "venv"]:
            (venv / ".gitignore").write_text("*\n")  # keep the environment out of the repository
    return finn_python(venv)
