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


# -- one producer per fact: who may reach the analysis, the CLI and each other ---------------------
#: What turns a stored run into its facts and findings. (``xprof_tools``, the converter's
#: reader, is a capture tool too: the distributed variants read their workers' traces.)
ANALYSIS_MODULES = {"profilers.analysis", "profilers.breakdown", "profilers.triage", "profilers.invariants",
                    "profilers.stored_analysis", "profilers.step_inference", "profilers.explain",
                    "profilers.diff", "profilers.op_category"}


def full_imports(path: Path) -> set[str]:
    """Every module a file imports, at any level, by its dotted name (``from profilers
    import analysis`` gives ``profilers.analysis``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_dashboard_pages_never_import_cli_modules():
    bad = {module_name(p): sorted(m for m in full_imports(p) if m.startswith("profilers.cli"))
           for p in py_files("dashboard")}
    assert not {k: v for k, v in bad.items() if v}


def test_workloads_never_import_the_analysis():
    bad = {module_name(p): sorted(full_imports(p) & ANALYSIS_MODULES) for p in py_files("workloads")}
    assert not {k: v for k, v in bad.items() if v}


def test_analysis_never_times_anything():
    # The GEMM peak is measured by the worker (profilers.environment); analysis only reads it.
    for name in ("analysis", "breakdown", "triage", "invariants", "op_category", "explain"):
        assert "time" not in imports(ROOT / "profilers" / f"{name}.py", False), name


def test_no_two_modules_import_each_other():
    files = {module_name(p): p for p in py_files("profilers", "workloads")}
    graph = {m: {i for i in full_imports(p) if i in files and i != m} for m, p in files.items()}
    cycles = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, ())})
    assert cycles == []


def test_the_cycle_check_sees_a_cycle(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from profilers import breakdown\n")
    assert "profilers.breakdown" in full_imports(a)
