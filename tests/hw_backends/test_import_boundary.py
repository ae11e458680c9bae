"""hw_backends imports no torch, brevitas or brevitas_amed, and keeps private names private."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hw_backends


def test_hw_backends_imports_no_torch():
    code = ("import sys, hw_backends; hw_backends.get('scalesim', profile='eyeriss', cache=False); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'brevitas', 'brevitas_amed'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_private_name_is_used_across_modules():
    """No ``from hw_backends.x import _y``, no ``obj._y`` outside ``self``/``cls``, and no private
    method defined in two modules (a subclass overriding its base's private hook)."""
    package = Path(hw_backends.__file__).parent
    problems, defined_in = [], {}
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hw_backends"):
                problems += [f"{path.name}: imports {a.name}" for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    problems.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.FunctionDef) and _private(node.name):
                defined_in.setdefault(node.name, set()).add(path.name)
    problems += [f"{name} defined in {sorted(files)}" for name, files in defined_in.items() if len(files) > 1]
    assert problems == []


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")
