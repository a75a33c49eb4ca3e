"""Layering rules from docs/DESIGN.md, checked by parsing imports (no module is run).

- dashboard/ and app.py never import tensorflow or pynvml (at any level).
- profilers/ and workloads/ never import tensorflow or pynvml at module level.
- nothing but app.py and dashboard/ imports dashboard.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"tensorflow", "pynvml", "keras"}


def imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def py_files(*dirs: str) -> list[Path]:
    return [p for d in dirs for p in sorted((ROOT / d).rglob("*.py"))]


def test_dashboard_never_imports_tensorflow_or_pynvml():
    files = py_files("dashboard") + [ROOT / "app.py"]
    bad = {str(p.relative_to(ROOT)): imports(p, False) & HEAVY for p in files if p.exists()}
    assert not {k: v for k, v in bad.items() if v}


def test_core_modules_defer_heavy_imports():
    bad = {str(p.relative_to(ROOT)): imports(p, True) & HEAVY for p in py_files("profilers", "workloads")}
    assert not {k: v for k, v in bad.items() if v}


def test_nothing_below_the_dashboard_imports_it():
    bad = [str(p.relative_to(ROOT)) for p in py_files("profilers", "workloads")
           if "dashboard" in imports(p, False)]
    assert not bad


def test_the_rules_see_a_violation(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    import tensorflow as tf\nimport pynvml\n")
    assert imports(sample, True) & HEAVY == {"pynvml"}
    assert imports(sample, False) & HEAVY == {"tensorflow", "pynvml"}
