"""The house rules of DESIGN.md, checked on the code itself: module size, no private names across
modules, the public API README shows, and imports without side effects."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("brevitas_amed", "hw_backends")
MAX_LINES = 350


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def dotted(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    name = dotted(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def private_crossings(path: Path, home: str | None = None) -> list[str]:
    """Uses in ``path`` of a ``_name`` that another module of ours defines.

    A private module may be imported by modules of its own package (the Optuna pattern: private
    modules behind a public ``__init__``); private functions, classes and attributes may not.
    """
    tree = ast.parse(path.read_text())
    home = home or package_of(path)
    ours: dict[str, str] = {}  # local alias -> our module it names
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            module = node.module
            private_parts = [p for p in module.split(".") if p.startswith("_")]
            if private_parts and not module.startswith(home + "."):
                found.append(f"imports private module {module}")
            for alias in node.names:
                target = f"{module}.{alias.name}"
                is_module = (REPO / Path(*target.split("."))).with_suffix(".py").is_file() or \
                    (REPO / Path(*target.split("."))).is_dir()
                if alias.name.startswith("_") and not (is_module and module == home):
                    found.append(f"imports {alias.name} from {module}")
                if is_module:
                    ours[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    ours[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ours:
                found.append(f"uses {base.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_module_is_small_and_uses_no_private_name_of_another(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines: split it by job"
    assert private_crossings(path) == []


def test_the_checker_finds_a_private_crossing(tmp_path):
    sample = REPO / "brevitas_amed" / "job" / "compare.py"
    bad = tmp_path / "bad.py"
    bad.write_text("from brevitas_amed.job import run\nfrom brevitas_amed.job.run import _secret\n"
                   "from brevitas_amed.search._kernel import propose\nrun._helper()\n")
    found = private_crossings(bad, home="brevitas_amed.job")
    assert sorted(found) == ["imports _secret from brevitas_amed.job.run",
                             "imports private module brevitas_amed.search._kernel", "uses run._helper"], found
    assert private_crossings(sample) == []


def test_public_api_is_what_readme_shows():
    from brevitas_amed import (AMEDSampler, GeometricAnnealing, QualityScore, calibrate, load_recipe,
                               quantize, run_compare, run_recipe)
    from brevitas_amed.job.compare import run_compare as compare_impl
    from brevitas_amed.job.recipe import load_recipe as load_impl
    from brevitas_amed.job.run import run as run_impl
    from brevitas_amed.quant import calibrate as calibrate_impl
    from brevitas_amed.quant import quantize as quantize_impl
    from brevitas_amed.search import AMEDSampler as sampler_impl

    import brevitas_amed

    assert callable(quantize) and quantize is quantize_impl is brevitas_amed.quantize
    assert calibrate is calibrate_impl and AMEDSampler is sampler_impl
    assert (load_recipe, run_recipe, run_compare) == (load_impl, run_impl, compare_impl)
    assert QualityScore(beta=0.1, reference_latency=1.0).score(0.9, 0.5) == pytest.approx(0.85)
    assert GeometricAnnealing(initial=0.1, final=0.01, n_trials=10)(10) == pytest.approx(0.01)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        brevitas_amed.nope  # noqa: B018


def test_importing_the_library_leaves_matplotlib_alone():
    code = ("import matplotlib; matplotlib.use('svg'); import brevitas_amed.job.report, brevitas_amed.job.compare; "
            "import brevitas_amed.cli; print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg"
