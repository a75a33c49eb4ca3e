"""``sgdscope run WORKLOAD --help``: the workload's variants, and its params with their
defaults and the variants that read them; without a workload, the list of workloads."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def helptext(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "profilers.cli", "run", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_run_workload_help_lists_variants_and_params_with_defaults():
    from workloads import WORKLOADS

    text = helptext("mlp", "--help")
    mlp = WORKLOADS["mlp"]
    for name in mlp.variants:
        assert f"\n  {name} " in text, name
    for p in mlp.params.values():
        default = "none" if p.default is None else p.default
        assert f"  {p.name}" in text and f"default {default}" in text, p.name
    assert "straggler_ms        default 50.0" in text and "(only multi_worker)" in text
    assert "numpy" in text and "[baseline]" in text


def test_run_help_without_a_workload_lists_the_workloads():
    text = helptext("--help")
    assert "workloads: " in text and "linreg" in text and "sgdscope run WORKLOAD --help" in text
